"""What keeps a live snapshot from waiting in the mutator's Faust consumer behind a bulk load."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

from faust.types import TP

from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.services.mutator.app import live_first, make_app
from pim_hub.services.mutator.settings import MutatorSettings

BULK = [TP(topics.SNAPSHOTS_BULK, p) for p in range(3)]
LIVE = [TP(topics.SNAPSHOTS, p) for p in range(3)]


class Fetched:
    """What aiokafka's `fetched_records` does: fetched records handed on partition by
    partition in the order they were fetched, at most `max_records` a call."""

    def __init__(self, max_records: int) -> None:
        self.records: OrderedDict[TP, list[int]] = OrderedDict()
        self.max_records = max_records
        self.timeouts: list[float | None] = []

    async def __call__(self, tps: set[TP] | None, timeout: float | None) -> dict[TP, list[int]]:
        self.timeouts.append(timeout)
        out: dict[TP, list[int]] = {}
        room = self.max_records
        for tp in list(self.records):
            if tps is not None and tp not in tps:
                continue
            taken, self.records[tp] = self.records[tp][:room], self.records[tp][room:]
            if not self.records[tp]:
                del self.records[tp]
            out[tp] = taken
            room -= len(taken)
            if not room:
                break
        return out


def _calls_until_live(fetch: Any, fetched: Fetched, active: set[TP]) -> int:
    async def scenario() -> int:
        calls = 0
        while True:
            calls += 1
            got = await fetch(active, 1.0)
            if any(tp.topic == topics.SNAPSHOTS for tp in got):
                return calls

    return asyncio.run(scenario())


def _backlog() -> Fetched:
    fetched = Fetched(max_records=250)
    for tp in BULK:  # a load's backlog fetched first ...
        fetched.records[tp] = list(range(2_000))
    fetched.records[LIVE[1]] = [1]  # ... then one live snapshot
    return fetched


def test_a_live_snapshot_fetched_after_a_bulk_backlog_is_handed_on_first() -> None:
    active = {*BULK, *LIVE}
    plain = _backlog()
    # Without it, the live snapshot waits for every bulk record fetched before it.
    assert _calls_until_live(plain, plain, active) == 25
    fetched = _backlog()
    assert _calls_until_live(lambda a, t: live_first(fetched, a, t), fetched, active) == 1
    # Looking at the live topic first does not wait: the caller's timeout is for the rest.
    assert fetched.timeouts == [0]


def test_with_nothing_live_fetched_it_fetches_as_asked() -> None:
    fetched = Fetched(max_records=250)
    fetched.records[BULK[0]] = list(range(300))
    got = asyncio.run(live_first(fetched, {*BULK, *LIVE}, 1.0))
    assert list(got) == [BULK[0]] and len(got[BULK[0]]) == 250
    assert fetched.timeouts == [0, 1.0]
    # Only live partitions active (bulk ones paused), or none named: one call, as asked.
    fetched.timeouts.clear()
    asyncio.run(live_first(fetched, set(LIVE), 1.0))
    asyncio.run(live_first(fetched, None, 1.0))
    assert fetched.timeouts == [1.0, 1.0]


def test_offsets_are_never_committed_inside_faust_delivery_loop(tmp_path: Path) -> None:
    """A commit flushes every queued table write first; in the delivery loop it stopped the
    delivery of live snapshots for seconds during a load. Faust's commit timer still commits."""
    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    mutator = MutatorSettings(app_id="live-commit", data_dir=str(tmp_path), store="memory")
    app = make_app(settings, mutator, "mutate")
    consumer = cast(Any, app.consumer)
    # Faust's delivery loop commits once this many records were acknowledged, unless None.
    assert app.conf.broker_commit_every == 10_000
    assert consumer._commit_every is None
    assert 0 < app.conf.broker_commit_interval <= 10
