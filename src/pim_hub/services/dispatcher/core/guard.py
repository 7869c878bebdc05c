"""Field-level version guard: which changes of a job are newer than what the target has."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple, Protocol

#: The field key of an entity's existence (create / delete); no real field starts with '@'.
ENTITY_FIELD = "@entity|||"

#: The field key of a creation's list of fields delivered together (`covers`); see guard_store.
FIELDS_FIELD = "@fields|||"

#: Job modes that bypass the guard (an operator forcing old state back into the target).
FORCE_MODES = frozenset({"replay-force"})


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
    """The version last delivered for one field, and by which job."""

    version: datetime
    job_id: str


Verdict = Literal["deliver", "partial", "already", "stale"]


class GuardDecision(NamedTuple):
    """What to hand the driver and what to record once it delivered.

    A named tuple: one is made for every job, and a frozen dataclass cost twice as much.

    Attributes:
        verdict: deliver (all changes), partial (only `keep`), already (this very job was
            delivered before: report delivered without calling the driver) or stale (skip).
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


def decide(
    job_id: str,
    operation: str,
    changes: Sequence[ChangeLike],
    version: str | None,
    stored: Mapping[str, Delivered],
    mode: str = "live",
    foreign: Callable[[str], bool] | None = None,
) -> GuardDecision:
    """Compare a job's changes with the versions already delivered for its entity.

    Args:
        job_id: the job's id (a job delivered before is recognised, not sent twice).
        operation: create, update or delete.
        changes: the mutation's changes, in order.
        version: the mutation's source version.
        stored: field key -> last delivered version, for this integration and entity.
        mode: the job mode; replay-force bypasses the guard.
        foreign: field key -> True when another source than Akeneo owns the field
            (HUB_SOURCES): its versions are that source's clock, compared only with each
            other, never with the entity's create or delete (Akeneo's clock).

    Returns:
        The decision; `keep` preserves the order of `changes`.
    """
    everything = tuple(range(len(changes)))
    instant = parse_version(version)
    if instant is None:
        # Without a version nothing can be ordered: deliver, and record nothing.
        return GuardDecision("deliver", everything, {})
    keys = [field_key(c) for c in changes]
    own = [*keys, ENTITY_FIELD] if operation in ("create", "delete") else keys
    record = dict.fromkeys(own, instant)
    if mode in FORCE_MODES:
        return GuardDecision("deliver", everything, record, force=True)
    if not stored:
        return GuardDecision("deliver", everything, record)  # nothing delivered before
    entity = stored.get(ENTITY_FIELD)
    if operation == "delete":
        ours = [d for k, d in stored.items() if foreign is None or not foreign(k)]
        newest = max(ours, key=lambda d: d.version, default=None)
        if entity is not None and entity.job_id == job_id and entity.version == instant:
            return GuardDecision("already", everything, record, reason="already delivered")
        if newest is not None and newest.version > instant:
            return GuardDecision(
                "stale", (), {}, reason=f"delete older than delivered version {_iso(newest)}"
            )
        return GuardDecision("deliver", everything, record)
    other_clock = foreign is not None and bool(keys) and all(foreign(k) for k in keys)
    if entity is not None and entity.version > instant and not other_clock:
        what = "deleted" if entity.job_id != job_id else "created"
        return GuardDecision(
            "stale", (), {}, reason=f"{operation} older than the entity {what} at {_iso(entity)}"
        )
    keep: list[int] = []
    mine = stale = 0
    for i, key in enumerate(keys):
        done = stored.get(key)
        if done is None or done.version < instant:
            keep.append(i)
        elif done.version == instant and done.job_id == job_id:
            mine += 1  # delivered by this job before a crash or a duplicate
        elif done.version == instant:
            keep.append(i)  # same instant from another mutation: the later arrival wins
        else:
            stale += 1
    if operation == "create" and entity is not None and entity.job_id == job_id and not keep:
        return GuardDecision("already", (), record, reason="already delivered")
    if not keep and changes:
        if mine:
            return GuardDecision("already", (), record, reason="already delivered")
        return GuardDecision("stale", (), {}, reason=f"all {stale} changes older than delivered")
    if len(keep) == len(changes):
        return GuardDecision("deliver", everything, record)
    kept = {keys[i] for i in keep}
    dropped = len(changes) - len(keep)
    return GuardDecision(
        "partial",
        tuple(keep),
        {k: v for k, v in record.items() if k in kept or k == ENTITY_FIELD},
        reason=f"{dropped} of {len(changes)} changes older than delivered (or delivered)",
    )


def _iso(d: Delivered) -> str:
    return d.version.isoformat()
