"""Dead letters: list them, and redrive them to their priority topic exactly once each.

The console reads them from a read model (`dead_letters`, migration 0022) that
`sync_dead_letters` extends with the records added since its last call, so a page load reads
rows, not the topic. `hub dead list` and the redrive read the topic itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from psycopg.types.json import Jsonb

from pim_hub.runtime import logread
from pim_hub.runtime.kafka import consumer_config, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.errors import SchemaError
from pim_hub.schemas.serde import Serde

logger = logging.getLogger(__name__)

#: The redrive's own consumer group on hub.jobs.dead: its committed offset is the point
#: before which every dead letter has been redriven.
REDRIVE_GROUP = "hub.dead.redrive"


@dataclass
class DeadLetter:
    """One record of hub.jobs.dead."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    kind: str
    reason: str
    job: dict[str, Any] | None  # None: the bytes were not a decodable job

    @property
    def job_id(self) -> str | None:
        """The job id, when decodable."""
        return self.job["job_id"] if self.job else None

    @property
    def integration_id(self) -> str | None:
        """The integration, when decodable."""
        return self.job["integration_id"] if self.job else None


@dataclass
class RedriveReport:
    """What a redrive did."""

    redriven: list[str] = field(default_factory=list)  # job ids
    duplicates: int = 0  # more dead letters of an already chosen job
    already: int = 0  # redriven before (by this or another operator)
    undecodable: int = 0
    missing: list[str] = field(default_factory=list)  # asked-for job ids not found


def _headers(raw: Any) -> dict[str, str]:
    items: Iterable[tuple[str, Any]] = raw.items() if isinstance(raw, dict) else (raw or [])
    return {
        k: v.decode(errors="replace") if isinstance(v, bytes) else str(v or "") for k, v in items
    }


class Progress(Protocol):
    """Where progress goes (a progress bar on the command line)."""

    def start(self, total: int) -> None:
        """The number of records to read."""

    def advance(self, n: int) -> None:
        """n more records read."""


def read_dead(
    settings: Settings,
    *,
    from_committed: bool,
    serde: Serde | None = None,
    progress: Progress | None = None,
) -> tuple[list[DeadLetter], Consumer]:
    """Read hub.jobs.dead up to its end, from the start or from the redrive group's offsets.

    Returns the records and the consumer (assigned, not subscribed: no group join wait);
    the caller closes it.
    """
    serde = serde or Serde(settings.registry_config())
    consumer = Consumer(consumer_config(settings, REDRIVE_GROUP))
    meta = consumer.list_topics(topics.JOBS_DEAD, timeout=10).topics[topics.JOBS_DEAD]
    parts = sorted(meta.partitions)
    starts: dict[int, int] = {}
    committed = (
        consumer.committed([TopicPartition(topics.JOBS_DEAD, p) for p in parts], timeout=10)
        if from_committed
        else []
    )
    for p in parts:
        low, _high = consumer.get_watermark_offsets(TopicPartition(topics.JOBS_DEAD, p), timeout=10)
        starts[p] = low
    for tp in committed:
        if tp.offset >= 0:
            starts[tp.partition] = max(starts[tp.partition], tp.offset)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topics.JOBS_DEAD, p), timeout=10)[1]
        for p in parts
    }
    todo = {p for p in parts if starts[p] < ends[p]}
    if progress is not None:
        progress.start(sum(ends[p] - starts[p] for p in todo))
    consumer.assign(
        [
            TopicPartition(topics.JOBS_DEAD, p, starts[p] if starts[p] > 0 else OFFSET_BEGINNING)
            for p in todo
        ]
    )
    out: list[DeadLetter] = []
    idle = 0
    while todo and idle < 50:
        msgs = consumer.consume(500, 0.2)
        idle = 0 if msgs else idle + 1
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    logger.warning("consumer error", extra={"error": str(err)})
                continue
            p, off = msg.partition(), msg.offset()
            assert p is not None and off is not None
            if p not in todo:
                continue
            if progress is not None:
                progress.advance(1)
            if off >= ends[p] - 1:
                todo.discard(p)
            if off >= ends[p]:
                continue
            out.append(_letter(msg, serde))
    if todo:
        logger.warning("dead-letter topic not read to its end", extra={"partitions": sorted(todo)})
    return out, consumer


def _letter(msg: Message, serde: Serde) -> DeadLetter:
    """One record of hub.jobs.dead, decoded (an undecodable value gives job None)."""
    p, off = msg.partition(), msg.offset()
    assert p is not None and off is not None
    headers = _headers(msg.headers())
    try:
        job: dict[str, Any] | None = serde.decode("Job", msg.value(), topic=topics.JOBS_DEAD)
    except SchemaError:
        job = None
    reason = headers.get("error.message") or (job or {}).get("last_error") or ""
    kind = headers.get("error.type", "unknown")
    return DeadLetter(p, off, msg.key(), msg.value(), kind, reason, job)


def redriven_offsets(url: str) -> set[tuple[int, int]]:
    """(partition, offset) of every dead letter already redriven."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT dead_partition, dead_offset FROM dead_letter_redrives")
        return {(int(p), int(o)) for p, o in rows.fetchall()}


def matches(d: DeadLetter, integration: str | None, reason: str | None) -> bool:
    """The list filters: integration id, and a reason matching the kind or the message."""
    if integration is not None and d.integration_id != integration:
        return False
    if reason is not None:
        needle = reason.lower()
        return needle == d.kind.lower() or needle in d.reason.lower()
    return True


def list_dead(
    settings: Settings,
    integration: str | None = None,
    reason: str | None = None,
    progress: Progress | None = None,
) -> list[DeadLetter]:
    """Dead letters not yet redriven, oldest first per partition."""
    letters, consumer = read_dead(settings, from_committed=False, progress=progress)
    consumer.close()
    done = redriven_offsets(settings.require_database())
    return [
        d
        for d in letters
        if (d.partition, d.offset) not in done and matches(d, integration, reason)
    ]


def redrive(
    settings: Settings,
    *,
    job_ids: list[str] | None = None,
    integration: str | None = None,
    everything: bool = False,
    progress: Progress | None = None,
) -> RedriveReport:
    """Put dead jobs back on their priority topic with attempt 1 and mode "redrive".

    Exactly once per dead letter: the (partition, offset) rows are inserted in a transaction
    that commits only after the broker acknowledged the jobs and their status events; a
    concurrent redrive blocks on those rows and then finds them taken. A crash between the
    acknowledgement and the commit can redrive a job twice; the version guard then sees the
    same job id and does not deliver it again.
    """
    if not (job_ids or integration or everything):
        raise ValueError("say which jobs: job ids, an integration, or everything")
    serde = Serde(settings.registry_config())
    letters, consumer = read_dead(settings, from_committed=True, serde=serde, progress=progress)
    report = RedriveReport()
    try:
        url = settings.require_database()
        wanted = set(job_ids or [])
        chosen: dict[str, DeadLetter] = {}
        extra: list[DeadLetter] = []  # further dead letters of a chosen job
        for d in letters:
            if d.job is None:
                report.undecodable += 1
                continue
            if wanted and d.job_id not in wanted:
                continue
            if integration is not None and d.integration_id != integration:
                continue
            assert d.job_id is not None
            if d.job_id in chosen:
                extra.append(chosen[d.job_id])  # the latest dead letter of a job wins
                report.duplicates += 1
            chosen[d.job_id] = d
        report.missing = sorted(wanted - set(chosen))
        producer = make_producer(settings)
        with psycopg.connect(url) as conn, conn.transaction():
            taken = _claim(conn, [*chosen.values(), *extra])
            sends = [d for d in chosen.values() if (d.partition, d.offset) in taken]
            report.already = len(chosen) - len(sends)
            errors: list[str] = []

            def on_delivery(err: KafkaError | None, _msg: Any) -> None:
                if err is not None:
                    errors.append(str(err))

            now = datetime.now(UTC)
            for d in sends:
                assert d.job is not None
                job = {**d.job, "attempt": 1, "mode": "redrive", "not_before": None}
                job["last_error"] = None
                topic = topics.job_topic(job["priority"])
                producer.produce(
                    topic,
                    serde.encode("Job", job, topic=topic),
                    key=d.key,
                    on_delivery=on_delivery,
                )
                producer.produce(
                    topics.DELIVERY_STATUS,
                    serde.encode(
                        "DeliveryStatus", _status(job, d, now), topic=topics.DELIVERY_STATUS
                    ),
                    key=job["mutation"]["entity_key"],
                    on_delivery=on_delivery,
                )
            if producer.flush(30) or errors:
                # Raising rolls the claims back: nothing is marked redriven that was not sent.
                raise RuntimeError(f"the broker did not acknowledge the redrive: {errors[:3]}")
            report.redriven = [d.job_id for d in sends if d.job_id]
        _commit_settled(consumer, letters, redriven_offsets(url))
    finally:
        consumer.close()
    return report


def _claim(conn: psycopg.Connection[Any], letters: list[DeadLetter]) -> set[tuple[int, int]]:
    if not letters:
        return set()
    rows = conn.execute(
        """
        INSERT INTO dead_letter_redrives (dead_partition, dead_offset, job_id, integration_id,
                                          priority)
        SELECT * FROM unnest(%s::int[], %s::bigint[], %s::text[], %s::text[], %s::text[])
        ON CONFLICT DO NOTHING
        RETURNING dead_partition, dead_offset
        """,
        (
            [d.partition for d in letters],
            [d.offset for d in letters],
            [d.job_id for d in letters],
            [d.integration_id for d in letters],
            [(d.job or {}).get("priority", "") for d in letters],
        ),
    ).fetchall()
    return {(int(p), int(o)) for p, o in rows}


def _status(job: dict[str, Any], d: DeadLetter, now: datetime) -> dict[str, Any]:
    return {
        "job_id": job["job_id"],
        "mutation_id": job["mutation"]["mutation_id"],
        "integration_id": job["integration_id"],
        "driver": job["driver"],
        "entity_key": job["mutation"]["entity_key"],
        "priority": job["priority"],
        "status": "retrying",
        "attempt": 1,
        "error_kind": "redrive",
        "error_message": f"redriven from {topics.JOBS_DEAD} (was {d.kind}: {d.reason})"[:4000],
        "target_ref": None,
        "duration_ms": 0.0,
        "source_received_at": job["mutation"]["source_received_at"],
        "occurred_at": now,
        "operation": job["mutation"]["operation"],
    }


def _commit_settled(
    consumer: Consumer, letters: list[DeadLetter], done: set[tuple[int, int]]
) -> None:
    """Move the group's offset over each partition's prefix of redriven dead letters."""
    by_part: dict[int, list[DeadLetter]] = {}
    for d in letters:
        by_part.setdefault(d.partition, []).append(d)
    offsets = []
    for p, items in by_part.items():
        point = None
        for d in sorted(items, key=lambda x: x.offset):
            if (p, d.offset) not in done:
                break
            point = d.offset + 1
        if point is not None:
            offsets.append(TopicPartition(topics.JOBS_DEAD, p, point))
    if offsets:
        consumer.commit(offsets=offsets, asynchronous=False)


# --- the read model (dead_letters) -----------------------------------------------------------

#: Serializes catch-ups (console replicas, concurrent page loads): the others wait, then find
#: nothing new to copy.
_SYNC_LOCK = "pim_hub.dead_letters"
_BATCH = 1000


def sync_dead_letters(settings: Settings, serde: Serde | None = None) -> int:
    """Copy the records hub.jobs.dead gained since the last call into `dead_letters`; returns
    how many were copied.

    Rows and the next offsets go in one transaction: a record is copied exactly once, and a
    failed call leaves the read model as it was. Records gone by retention leave the read model
    too; a partition whose end is before the stored position (the topic was recreated) is
    copied again from its start.
    """
    url = settings.require_database()
    consumer = logread.ephemeral_consumer(settings, "dead-letters")
    copied = 0
    try:
        with psycopg.connect(url) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_SYNC_LOCK,))
            stored = {
                int(p): int(o)
                for p, o in conn.execute(
                    "SELECT dead_partition, next_offset FROM dead_letter_positions"
                ).fetchall()
            }
            ranges: dict[tuple[str, int], tuple[int, int]] = {}
            for p in logread.partitions_of(consumer, topics.JOBS_DEAD):
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topics.JOBS_DEAD, p), timeout=10
                )
                low, high = max(low, 0), max(high, 0)
                start = stored.get(p, low)
                if start > high:  # another log under the same name: what we hold is not of it
                    conn.execute("DELETE FROM dead_letters WHERE dead_partition = %s", (p,))
                    start = low
                if low > 0:  # removed by retention: no longer redrivable either
                    conn.execute(
                        "DELETE FROM dead_letters WHERE dead_partition = %s AND dead_offset < %s",
                        (p, low),
                    )
                ranges[(topics.JOBS_DEAD, p)] = (max(start, low), high)
            rows: list[tuple[Any, ...]] = []
            todo = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
            if todo:
                serde = serde or Serde(settings.registry_config())
                for msg in logread.scan(consumer, todo):
                    rows.append(_row(_letter(msg, serde), msg))
                    if len(rows) >= _BATCH:
                        copied += _insert(conn, rows)
                        rows = []
                copied += _insert(conn, rows)
            if ranges:
                conn.execute(
                    """
                    INSERT INTO dead_letter_positions (dead_partition, next_offset)
                    SELECT * FROM unnest(%s::int[], %s::bigint[])
                    ON CONFLICT (dead_partition) DO UPDATE
                    SET next_offset = excluded.next_offset, updated_at = now()
                    WHERE dead_letter_positions.next_offset <> excluded.next_offset
                    """,
                    ([tp[1] for tp in ranges], [r[1] for r in ranges.values()]),
                )
    finally:
        consumer.close()
    return copied


def _row(d: DeadLetter, msg: Message) -> tuple[Any, ...]:
    _kind, ts = msg.timestamp()
    at = datetime.fromtimestamp(max(ts, 0) / 1000, UTC)
    # The job is kept for display only (the redrive reads the record itself): dates as text.
    job = Jsonb(orjson.loads(orjson.dumps(d.job, default=str))) if d.job is not None else None
    return (d.partition, d.offset, d.job_id, d.integration_id, d.kind, d.reason, job, at)


def _insert(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> int:
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (dead_partition, dead_offset, job_id, integration_id, kind,"
            " reason, job, dead_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            rows,
        )
    return len(rows)


#: Dead letters of the read model not yet redriven, filtered as `hub dead list` filters
#: (integration id; a reason equal to the kind or found in the message, case-insensitive).
_PENDING = """
    SELECT d.*, coalesce(d.integration_id, '(undecodable)') AS grp FROM dead_letters d
    WHERE NOT EXISTS (SELECT 1 FROM dead_letter_redrives r
                      WHERE r.dead_partition = d.dead_partition
                        AND r.dead_offset = d.dead_offset)
      AND (%(integration)s::text IS NULL OR d.integration_id = %(integration)s)
      AND (%(reason)s::text IS NULL OR lower(d.kind) = lower(%(reason)s)
           OR strpos(lower(d.reason), lower(%(reason)s)) > 0)
"""


@dataclass
class PendingGroup:
    """Dead letters of one integration with one error kind, not yet redriven."""

    integration_id: str
    kind: str
    letters: int  # dead letters in the group
    jobs: int  # distinct jobs among them
    last_reason: str  # the newest dead letter's reason
    shown: list[DeadLetter]  # the oldest `limit` of them


def pending_groups(
    url: str, integration: str | None, reason: str | None, limit: int
) -> list[PendingGroup]:
    """The read model's dead letters not yet redriven, grouped by integration and kind, with
    at most `limit` letters listed per group (the counts are of all of them)."""
    params = {"integration": integration or None, "reason": reason or None, "limit": limit}
    with psycopg.connect(url) as conn:
        groups = conn.execute(
            f"WITH pending AS ({_PENDING})"
            " SELECT grp, kind, count(*), count(DISTINCT job_id),"
            " (array_agg(reason ORDER BY dead_at DESC, dead_offset DESC))[1]"
            " FROM pending GROUP BY grp, kind ORDER BY grp, kind",
            params,
        ).fetchall()
        rows = conn.execute(
            f"WITH pending AS ({_PENDING})"
            " SELECT grp, dead_partition, dead_offset, kind, reason, job FROM ("
            "  SELECT *, row_number() OVER (PARTITION BY grp, kind"
            "   ORDER BY dead_at, dead_partition, dead_offset) AS n FROM pending) x"
            " WHERE n <= %(limit)s ORDER BY dead_at, dead_partition, dead_offset",
            params,
        ).fetchall()
    shown: dict[tuple[str, str], list[DeadLetter]] = {}
    for grp, p, off, kind, why, job in rows:
        shown.setdefault((grp, kind), []).append(
            DeadLetter(int(p), int(off), None, None, kind, why, job)
        )
    return [
        PendingGroup(grp, kind, int(n), int(jobs), last or "", shown.get((grp, kind), []))
        for grp, kind, n, jobs, last in groups
    ]


def pending_job_ids(
    url: str,
    *,
    integration: str | None = None,
    kind: str | None = None,
    among: list[str] | None = None,
) -> list[str]:
    """Distinct job ids of the read model's dead letters not yet redriven, oldest first: of
    one group (integration and kind), or those of `among` still pending."""
    sql = f"WITH pending AS ({_PENDING}) SELECT job_id FROM pending WHERE job_id IS NOT NULL"
    params: dict[str, Any] = {"integration": None, "reason": None}
    if integration is not None and kind is not None:
        sql += " AND grp = %(grp)s AND kind = %(kind)s"
        params |= {"grp": integration, "kind": kind}
    if among is not None:
        sql += " AND job_id = ANY(%(among)s)"
        params["among"] = among
    sql += " GROUP BY job_id ORDER BY min(dead_at), min(dead_offset)"
    with psycopg.connect(url) as conn:
        return [str(j) for (j,) in conn.execute(sql, params).fetchall()]
