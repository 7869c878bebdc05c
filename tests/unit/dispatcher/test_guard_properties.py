"""The version guard over random histories: live delivery, failures, redeliveries, replays.

A model of one entity at one integration: the hub's log of mutations (what the mutator
emits), a target that applies what the driver is given, and a guard store that keeps what
`guard_store.RECORD` keeps (a version moves forward only, except when forced). After every
step the target must hold the newest state of what was processed whenever no failed job is
outstanding, a guarded replay must send nothing the target already has, and no value sent
for a field may be older than one sent for it before (except by a forced replay).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pim_hub.schemas.events import Change
from pim_hub.services.dispatcher.core.guard import Delivered, decide, field_key

FIELDS = ("a", "b", "c")
BASE = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Mut:
    """One mutation of the log: its id, operation, version (seconds) and values."""

    mutation_id: str
    operation: str
    version: int
    values: dict[str, int]

    def changes(self) -> list[Change]:
        return [
            Change(field="values", attribute=f, locale=None, scope=None, new=str(v))
            for f, v in self.values.items()
        ]

    def iso(self) -> str:
        return (BASE + timedelta(seconds=self.version)).isoformat()


@st.composite
def histories(draw: st.DrawFn) -> list[Mut]:
    """Creations, updates and deletions as the mutator emits them.

    Versions never go back. A deletion may share the version of the update before it (a
    deletion stamped with the file's `updated`); two updates never share one (see the
    limits in docs/delivery-semantics.md); a creation after a deletion is newer than it.
    """
    counter = itertools.count(1)
    ops: list[Mut] = []
    version = 1
    values = {f: next(counter) for f in FIELDS}
    ops.append(Mut("m0", "create", version, dict(values)))
    exists = True
    for i in range(1, draw(st.integers(1, 10))):
        if exists and draw(st.booleans()):
            picked = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
            version += draw(st.integers(1, 2))
            ops.append(Mut(f"m{i}", "update", version, {f: next(counter) for f in picked}))
        elif exists:
            if ops[-1].operation != "update" or draw(st.booleans()):
                version += 1
            ops.append(Mut(f"m{i}", "delete", version, {}))
            exists = False
        else:
            version += draw(st.integers(1, 2))
            ops.append(Mut(f"m{i}", "create", version, {f: next(counter) for f in FIELDS}))
            exists = True
    return ops


@dataclass
class World:
    """The target, the guard store and what was sent."""

    log: list[Mut]
    store: dict[str, Delivered] = field(default_factory=dict)
    delivered_jobs: set[str] = field(default_factory=set)
    exists: bool = False
    target: dict[str, int] = field(default_factory=dict)
    sent_version: dict[str, int] = field(default_factory=dict)  # field -> last version sent
    processed: int = 0
    failed: set[int] = field(default_factory=set)
    sends: int = 0

    def deliver(self, index: int, job_id: str, mode: str) -> None:
        """What the dispatcher does with one job (guard_store semantics for the recording)."""
        mut = self.log[index]
        if job_id in self.delivered_jobs and mode != "replay-force":
            return  # read again after a crash: reported as it ended, the driver not called
        dec = decide(mut.mutation_id, mut.operation, mut.changes(), mut.iso(), self.store, mode)
        if dec.verdict in ("stale", "already"):
            return
        self.sends += 1
        kept = [list(mut.values)[k] for k in dec.keep]
        if mode != "replay-force":
            for f in kept:
                assert mut.version >= self.sent_version.get(f, 0), (
                    f"{f}: version {mut.version} sent after {self.sent_version[f]}"
                )
        if mut.operation == "delete":
            self.exists, self.target = False, {}
        else:
            self.exists = True  # creations and updates are upserts at the target
            self.target.update({f: mut.values[f] for f in kept})
        for f in kept:
            self.sent_version[f] = mut.version
        self.delivered_jobs.add(job_id)
        for key, at in dec.record.items():
            old = self.store.get(key)
            if dec.force or old is None or at >= old.version:
                self.store[key] = Delivered(at, mut.mutation_id)

    def newest(self) -> tuple[bool, dict[str, int]]:
        """The state after every processed mutation, in log order."""
        exists = False
        state: dict[str, int] = {}
        for mut in self.log[: self.processed]:
            if mut.operation == "delete":
                exists, state = False, {}
            elif mut.operation == "create":
                exists, state = True, dict(mut.values)
            else:
                state.update(mut.values)
        return exists, state

    def check(self) -> None:
        if self.failed:
            return  # a change the target never got is missing until a replay brings it
        exists, state = self.newest()
        assert self.exists == exists
        if exists:
            assert self.target == state


def live_id(i: int) -> str:
    return f"live-{i}"


@settings(max_examples=400, deadline=None)
@given(histories(), st.data())
def test_random_histories_keep_the_target_newest(log: list[Mut], data: st.DataObject) -> None:
    world = World(log)
    runs = itertools.count()
    while world.processed < len(log) or data.draw(st.integers(0, 3), label="more") > 0:
        steps = ["replay", "force", "redeliver"]
        if world.processed < len(log):
            steps = ["live", "fail", "live", *steps]  # the simplest history: all live
        step = data.draw(st.sampled_from(steps), label="step")
        if step in ("live", "fail"):
            i = world.processed
            world.processed += 1
            if step == "fail":
                world.failed.add(i)  # dead: the driver never got it, nothing recorded
            else:
                world.deliver(i, live_id(i), "live")
        elif world.processed == 0:
            continue
        elif step == "redeliver":
            # A duplicate, or a dead job redriven under its own id.
            i = data.draw(st.integers(0, world.processed - 1), label="job")
            world.deliver(i, live_id(i), "redrive" if i in world.failed else "live")
            world.failed.discard(i)
        else:
            lo = data.draw(st.integers(0, world.processed - 1), label="from")
            hi = data.draw(st.integers(lo, world.processed - 1), label="to")
            run = next(runs)
            if step == "replay":
                in_sync = not world.failed
                before = world.sends
                for i in range(lo, hi + 1):
                    world.deliver(i, f"replay-{run}-{i}", "replay-guarded")
                    world.failed.discard(i)
                if in_sync:
                    assert world.sends == before, "a guarded replay re-sent what the target has"
            else:
                for i in range(lo, hi + 1):
                    world.deliver(i, f"force-{run}-{i}", "replay-force")
                # The operator then catches the target up with a guarded replay of it all.
                world.sent_version.clear()  # the forced values were older on purpose
                for i in range(world.processed):
                    world.deliver(i, f"catch-up-{run}-{i}", "replay-guarded")
                world.failed.clear()
        world.check()


def test_the_issue_history_replayed_sends_nothing() -> None:
    """Create v1, update v2 (description), update v3 (price), all delivered, then replayed."""
    log = [
        Mut("c", "create", 1, {f: i for i, f in enumerate(FIELDS)}),
        Mut("u2", "update", 2, {"a": 10}),
        Mut("u3", "update", 3, {"b": 11}),
    ]
    world = World(log)
    for i in range(3):
        world.processed += 1
        world.deliver(i, live_id(i), "live")
    for i in range(3):
        world.deliver(i, f"replay-{i}", "replay-guarded")
    assert world.sends == 3
    world.check()


def test_an_update_then_a_deletion_at_one_version_replayed_keeps_it_deleted() -> None:
    log = [
        Mut("c", "create", 1, {f: i for i, f in enumerate(FIELDS)}),
        Mut("u", "update", 5, {"a": 10}),
        Mut("d", "delete", 5, {}),
    ]
    world = World(log)
    for i in range(3):
        world.processed += 1
        world.deliver(i, live_id(i), "live")
    assert not world.exists
    # A replay in which the deletion arrives first (another lane) sends nothing at all.
    for i in (2, 0, 1):
        world.deliver(i, f"replay-{i}", "replay-guarded")
    assert world.sends == 3
    world.check()
    # The same jobs live, in that order: the update after the deletion is refused too.
    other = World(log)
    other.processed = 3
    for i in (0, 2, 1):
        other.deliver(i, live_id(i), "live")
    assert not other.exists
    assert field_key(log[1].changes()[0]) not in {k for k, v in other.store.items() if v.by == "u"}
