"""Field-level version guard: which changes of a job the target does not have yet.

The rules are written down, as a table, in docs/delivery-semantics.md; in short:

- a change goes out only when it is newer than what was delivered for its field;
- "the target already has exactly this" is recognised by the delivering mutation's id (the
  same entity, version and content), never by the job id: a replay or a resync makes new job
  ids for the same mutations;
- at one version a deletion wins: a creation or update at (or before) a delivered deletion's
  version is stale, and a deletion goes out over updates of its own version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple, Protocol

#: The field key of an entity's existence (create / delete); no real field starts with '@'.
ENTITY_FIELD = "@entity|||"

#: The field key of a creation's list of fields delivered together (`covers`); see guard_store.
FIELDS_FIELD = "@fields|||"

#: The field key a deletion records beside ENTITY_FIELD (same version, same mutation): the
#: entity is deleted at the target while both rows name the same delivering mutation.
DELETED_FIELD = "@deleted|||"

#: Job modes that bypass the guard (an operator forcing old state back into the target).
FORCE_MODES = frozenset({"replay-force"})

#: Job modes that send only what the target lacks: a change at the version the target already
#: holds for its field counts as delivered, whichever mutation delivered it (see the docs).
#: Live jobs, redrives and resyncs keep "the later arrival wins" at equal versions instead,
#: so two edits within one source second both reach the target, in log order.
CATCH_UP_MODES = frozenset({"replay-guarded"})


class ChangeLike(Protocol):
    """What the guard reads of a change."""

    @property
    def field(self) -> str: ...

    @property
    def attribute(self) -> str | None: ...

    @property
    def locale(self) -> str | None: ...

    @property
    def scope(self) -> str | None: ...


@dataclass(frozen=True)
class Delivered:
    """The version last delivered for one field, and by which mutation.

    `by` is the id of the delivering job's mutation (rows recorded before the guard keyed on
    mutations hold a job id there: they only ever compare unequal, which costs one re-send).
    """

    version: datetime
    by: str


Verdict = Literal["deliver", "partial", "already", "stale"]


class GuardDecision(NamedTuple):
    """What to hand the driver and what to record once it delivered.

    A named tuple: one is made for every job, and a frozen dataclass cost twice as much.

    Attributes:
        verdict: deliver (all changes), partial (only `keep`), already (the target holds this
            already: report delivered without calling the driver) or stale (skip).
        keep: indexes of the changes to deliver.
        record: field key -> version to record after a successful delivery.
        force: record even when older than what is stored (replay-force).
        reason: why changes were dropped, for the status event.
    """

    verdict: Verdict
    keep: tuple[int, ...]
    record: Mapping[str, datetime]
    force: bool = False
    reason: str | None = None


def field_key(change: ChangeLike) -> str:
    """`field|attribute|locale|scope`, the guard's key of one change."""
    return f"{change.field}|{change.attribute or ''}|{change.locale or ''}|{change.scope or ''}"


def parse_version(version: str | None) -> datetime | None:
    """A source version (ISO 8601, UTC when no offset) as an instant; None when absent or bad."""
    if not version:
        return None
    try:
        instant = datetime.fromisoformat(version)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def deleted_at(stored: Mapping[str, Delivered]) -> Delivered | None:
    """The delivered deletion the target's entity is in, or None while it exists (or unknown).

    A deletion records ENTITY_FIELD and DELETED_FIELD with one version and one mutation; a
    later creation (even a forced, older one) rewrites ENTITY_FIELD, so the pair differs.
    """
    gone = stored.get(DELETED_FIELD)
    entity = stored.get(ENTITY_FIELD)
    if gone is None or entity is None or gone != entity:
        return None
    return gone


def decide(
    mutation_id: str,
    operation: str,
    changes: Sequence[ChangeLike],
    version: str | None,
    stored: Mapping[str, Delivered],
    mode: str = "live",
    foreign: Callable[[str], bool] | None = None,
) -> GuardDecision:
    """Compare a job's changes with the versions already delivered for its entity.

    Args:
        mutation_id: the id of the job's mutation (what the target got is recognised by it,
            whatever job delivered it).
        operation: create, update or delete.
        changes: the mutation's changes, in order.
        version: the mutation's source version.
        stored: field key -> last delivered version, for this integration and entity.
        mode: the job mode; replay-force bypasses the guard, replay-guarded sends only what
            the target lacks.
        foreign: field key -> True when another source than Akeneo owns the field
            (HUB_SOURCES): its versions are that source's clock, compared only with each
            other, never with the entity's creation or deletion (Akeneo's clock).

    Returns:
        The decision; `keep` preserves the order of `changes`.
    """
    everything = tuple(range(len(changes)))
    instant = parse_version(version)
    if instant is None:
        # Without a version nothing can be ordered: deliver, and record nothing.
        return GuardDecision("deliver", everything, {})
    keys = [field_key(c) for c in changes]
    if operation == "delete":
        record = dict.fromkeys([*keys, ENTITY_FIELD, DELETED_FIELD], instant)
    elif operation == "create":
        record = dict.fromkeys([*keys, ENTITY_FIELD], instant)
    else:
        record = dict.fromkeys(keys, instant)
    gone = deleted_at(stored)
    if gone is not None and operation == "update":
        # An update of a deleted entity brings it back at the target (an upsert), whatever
        # let it through (a forced replay, a newer version): its own deletion marker says
        # the entity is no longer deleted, and leaves the entity's version alone.
        record[DELETED_FIELD] = instant
    if mode in FORCE_MODES:
        if operation == "delete":
            # The target lost every field with the entity: what was recorded for them
            # (perhaps newer, the replay goes back in time) no longer holds.
            record = {**dict.fromkeys(stored, instant), **record}
        return GuardDecision("deliver", everything, record, force=True)
    if not stored:
        return GuardDecision("deliver", everything, record)  # nothing delivered before
    entity = stored.get(ENTITY_FIELD)
    if operation == "delete":
        if gone is not None and gone.version == instant:
            return GuardDecision("already", everything, record, reason="already deleted")
        ours = [d for k, d in stored.items() if foreign is None or not foreign(k)]
        newest = max(ours, key=lambda d: d.version, default=None)
        if newest is not None and newest.version > instant:
            return GuardDecision(
                "stale", (), {}, reason=f"delete older than delivered version {_iso(newest)}"
            )
        # Updates of the same version do not hold a deletion back: at one version it wins.
        return GuardDecision("deliver", everything, record)
    if gone is not None and gone.version >= instant:
        # A deletion at V wins over a creation or update at V: equal versions do not pass.
        return GuardDecision(
            "stale",
            (),
            {},
            reason=f"{operation} not newer than the entity deleted at {_iso(gone)}",
        )
    other_clock = foreign is not None and bool(keys) and all(foreign(k) for k in keys)
    if entity is not None and entity.version > instant and not other_clock:
        return GuardDecision(
            "stale",
            (),
            {},
            reason=f"{operation} older than the entity's creation or deletion at {_iso(entity)}",
        )
    if gone is not None:
        # The target deleted the entity, and what it held with it: every change goes out,
        # whatever was delivered for its field before the deletion (or forced since).
        return GuardDecision("deliver", everything, record)
    catch_up = mode in CATCH_UP_MODES
    keep: list[int] = []
    had = stale = 0
    for i, key in enumerate(keys):
        done = stored.get(key)
        if done is None or done.version < instant:
            keep.append(i)
        elif done.version == instant and (done.by == mutation_id or catch_up):
            had += 1  # the target has this very change (or, catching up, this version)
        elif done.version == instant:
            keep.append(i)  # another mutation of the same instant, arriving later: it wins
        else:
            stale += 1
    if operation == "create" and entity is not None and entity.by == mutation_id and not keep:
        return GuardDecision("already", (), record, reason="already delivered")
    if not keep and changes:
        if had:
            return GuardDecision("already", (), record, reason="already delivered")
        return GuardDecision("stale", (), {}, reason=f"all {stale} changes older than delivered")
    if len(keep) == len(changes):
        return GuardDecision("deliver", everything, record)
    kept = {keys[i] for i in keep}
    dropped = len(changes) - len(keep)
    return GuardDecision(
        "partial",
        tuple(keep),
        {k: v for k, v in record.items() if k in kept or k[0] == "@"},
        reason=f"{dropped} of {len(changes)} changes older than delivered (or delivered)",
    )


def _iso(d: Delivered) -> str:
    return d.version.isoformat()
