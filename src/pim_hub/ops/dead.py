"""Dead letters: list them, and redrive them to their priority topic exactly once each."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

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
            headers = _headers(msg.headers())
            try:
                job: dict[str, Any] | None = serde.decode(
                    "Job", msg.value(), topic=topics.JOBS_DEAD
                )
            except SchemaError:
                job = None
            reason = headers.get("error.message") or (job or {}).get("last_error") or ""
            kind = headers.get("error.type", "unknown")
            out.append(DeadLetter(p, off, msg.key(), msg.value(), kind, reason, job))
    if todo:
        logger.warning("dead-letter topic not read to its end", extra={"partitions": sorted(todo)})
    return out, consumer


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
