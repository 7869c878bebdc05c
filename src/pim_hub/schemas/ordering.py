"""Per-entity order across priority lanes: the record headers that chain an entity's jobs.

One entity's jobs for one integration may go to different priority topics (a description on
`normal`, a price on `immediate`), read by different dispatchers. A dispatcher that has not
read an older job yet cannot know of it from the broker, so the order travels with the
records (docs/delivery-semantics.md, "Per-entity order across priority lanes"):

- the mutator names, on each mutation, the entity's previous mutation and when it was made
  (`PREV_MUTATION`);
- fan-out turns that into the id of the job the previous mutation made for the same
  integration (`PREV_JOB`), and a replay names the previous job it published itself;
- a dispatcher holds a job until the job it names has finished, for at most the order hold.

Headers rather than Avro fields: they describe how records relate, not what a record says,
and a record written without them (an outside producer, an older hub) still reads the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

#: On a mutation: "<previous mutation id> <its created_at, epoch milliseconds>".
PREV_MUTATION = "pimhub.prev-mutation"
#: On a job: "<id> <epoch ms>" of the previous job of the same entity and integration (the
#: one it must not overtake) and about when it was made.
PREV_JOB = "pimhub.prev-job"

Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the epoch (a naive datetime is taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def prev_mutation_value(mutation_id: str, created_ms: int) -> bytes:
    """The PREV_MUTATION header's value."""
    return f"{mutation_id} {created_ms}".encode()


def _header(headers: Headers, name: str) -> str | bytes | None:
    if not headers:
        return None
    if isinstance(headers, Mapping):
        return headers.get(name)
    for key, value in headers:
        if key == name:
            return value
    return None


def _text(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value


def prev_job_value(job_id: str, made_ms: int) -> bytes:
    """The PREV_JOB header's value."""
    return f"{job_id} {made_ms}".encode()


def _pair(headers: Headers, name: str) -> tuple[str, int] | None:
    text = _text(_header(headers, name))
    if not text:
        return None
    ident, _, at = text.partition(" ")
    if not ident or not at.isdigit():
        return None
    return ident, int(at)


def prev_mutation(headers: Headers) -> tuple[str, int] | None:
    """(previous mutation id, its created_at in epoch ms) from a mutation's headers.

    None when absent or malformed: the job is then not chained (the order is kept as before,
    by the dispatchers' pending list, for the jobs they have read).
    """
    return _pair(headers, PREV_MUTATION)


def prev_job(headers: Headers) -> tuple[str, int] | None:
    """(id, epoch ms made) of the job this one must not overtake, from a job's headers."""
    return _pair(headers, PREV_JOB)
