"""The loop every PostgreSQL projector runs: consume a batch, decode it, write it, then commit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pim_hub.runtime import metrics
from pim_hub.runtime.health import HEALTH
from pim_hub.runtime.kafka import consumer_config
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.errors import SchemaError
from pim_hub.schemas.limits import escape_controls
from pim_hub.schemas.serde import Serde

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: Writes one batch of decoded records through a cursor of the batch's transaction.
Write = Callable[[psycopg.Cursor[Any], list[dict[str, Any]]], R]
#: (topic, partition) -> the next offset to read, i.e. what to commit.
Offsets = dict[tuple[str, int], int]
#: (topic, partition, offset, key) of one decoded record.
Position = tuple[str, int, int, bytes | None]

RECORD_SET_ASIDE = """
INSERT INTO set_aside_records (stage, topic, partition, "offset", record_key, reason, message)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (stage, topic, partition, "offset") DO NOTHING
"""


def write_batch(conn: psycopg.Connection[Any], write: Write[R], records: list[dict[str, Any]]) -> R:
    """Run `write` over one batch in one transaction: all of its rows land, or none do."""
    with conn.transaction(), conn.cursor() as cur:
        return write(cur, records)


class BatchProjector(Generic[R]):
    """A consumer group that projects one topic into PostgreSQL, one transaction a batch.

    Offsets are committed only after the batch's transaction: a crash or a rebalance re-reads
    the last batch, so `write` must be idempotent. A record that does not decode is logged
    and passed over (its offset is committed): the topic, not the projection, is the record.
    Subclasses say what they read (`topic`, `schema`) and how it lands (`write`, `written`).
    """

    #: The topic projected and the schema its records are written with.
    topic: ClassVar[str]
    schema: ClassVar[str]
    #: The service name to serve /metrics as (when HUB_METRICS_PORT is set); None: none.
    metrics_service: ClassVar[str | None] = None
    #: The stage name of what this projector sets aside (metric label and row).
    stage: ClassVar[str] = "projector"
    #: Where the loop logs (the projector's own module logger keeps its log records' name).
    log: ClassVar[logging.Logger] = logger
    #: The log message for a record passed over because it does not decode.
    undecodable_message: ClassVar[str] = "undecodable record not projected"
    #: At most this many records a batch; wait at most this long for the first one.
    batch_size: ClassVar[int] = 500
    poll_timeout_s: ClassVar[float] = 0.2
    #: /healthz fails when the loop has not come round for this long (a hung write).
    liveness_allowance_s: ClassVar[float] = 60.0

    def __init__(self, settings: Settings, group: str) -> None:
        self.settings = settings
        self.group = group
        self.serde = Serde(settings.registry_config())
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the batch in hand and leave (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped; offsets are committed only after the rows are written."""
        if self.metrics_service is not None:
            metrics.start_from_env(
                self.metrics_service,
                kafka=self.settings.kafka_config(),
                database_url=self.settings.require_database(),
                group=self.group,
            )
        # Projections feed the console and the operators' queries, not deliveries.
        consumer = Consumer(consumer_config(self.settings, self.group, background=True))
        service = self.metrics_service or self.group
        ready = threading.Event()

        def on_assign(assigned: Consumer, partitions: list[TopicPartition]) -> None:
            self._assigned(assigned, partitions)
            # One line when the group first hands this process its partitions.
            if not ready.is_set():
                ready.set()
                self.log.info(
                    "service ready",
                    extra={
                        "service": service,
                        "group": self.group,
                        "topic": self.topic,
                        "partitions": len(partitions),
                    },
                )

        consumer.subscribe([self.topic], on_assign=on_assign)
        conn = psycopg.connect(self.settings.require_database(), autocommit=True)
        self.log.info(
            "service starting", extra={"service": service, "group": self.group, "topic": self.topic}
        )
        try:
            while not self._stop.is_set():
                HEALTH.beat(self.group, self.liveness_allowance_s)
                msgs = consumer.consume(self.batch_size, self.poll_timeout_s)
                if msgs:
                    self.handle(consumer, conn, msgs)
        finally:
            # Closing leaves the group at once, so the partitions move without a timeout.
            consumer.close()
            conn.close()
            HEALTH.forget(self.group)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        HEALTH.set("assigned", True, f"{len(partitions)} partition(s) of {self.topic}")

    def handle(
        self, consumer: Consumer, conn: psycopg.Connection[Any], msgs: list[Message]
    ) -> None:
        """Project one batch of messages, then commit past them."""
        records, offsets, positions = self.decode_positions(msgs)
        if records:
            try:
                result = write_batch(conn, self.write, records)
            except psycopg.DataError:
                self.write_one_by_one(conn, records, positions)
            else:
                self.written(records, result)
        if offsets:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )

    def write_one_by_one(
        self,
        conn: psycopg.Connection[Any],
        records: list[dict[str, Any]],
        positions: list[Position],
    ) -> None:
        """Write each record in its own transaction; set aside those refused for their data."""
        for record, position in zip(records, positions, strict=True):
            try:
                result = write_batch(conn, self.write, [record])
            except psycopg.DataError as exc:
                self.set_aside(conn, position, exc)
            else:
                self.written([record], result)

    def set_aside(
        self, conn: psycopg.Connection[Any], position: Position, exc: psycopg.DataError
    ) -> None:
        """Record a record PostgreSQL refused, with its reason; the projector goes on."""
        topic, partition, offset, key = position
        stage = self.stage
        # The key itself may hold what PostgreSQL refused (NUL): stored with controls escaped.
        shown = escape_controls(key.decode(errors="backslashreplace")) if key else None
        message = escape_controls(str(exc))[:2000]
        reason = "data_error"
        self.log.error(
            "record refused by PostgreSQL set aside",
            extra={
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "key": shown,
                "error": message,
            },
        )
        with conn.transaction():
            conn.execute(
                RECORD_SET_ASIDE, (stage, topic, partition, offset, shown, reason, message)
            )
        metrics.RECORDS_SET_ASIDE.labels(stage, reason).inc()

    def decode(self, msgs: list[Message]) -> tuple[list[dict[str, Any]], Offsets]:
        """The decoded records of a batch, in log order, and the offsets that pass it."""
        records, offsets, _ = self.decode_positions(msgs)
        return records, offsets

    def decode_positions(
        self, msgs: list[Message]
    ) -> tuple[list[dict[str, Any]], Offsets, list[Position]]:
        """decode, with the position of each decoded record (for what is set aside)."""
        records: list[dict[str, Any]] = []
        positions: list[Position] = []
        offsets: Offsets = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self.log.warning("consumer error", extra={"error": str(err)})
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None
            offsets[(topic, partition)] = offset + 1
            try:
                records.append(self.serde.decode(self.schema, msg.value(), topic=topic))
            except SchemaError as exc:
                self.undecodable(topic, partition, offset, exc)
            else:
                positions.append((topic, partition, offset, msg.key()))
        return records, offsets, positions

    def write(self, cur: psycopg.Cursor[Any], records: list[dict[str, Any]]) -> R:
        """Write one batch of decoded records (inside the batch's transaction)."""
        raise NotImplementedError

    def written(self, records: list[dict[str, Any]], result: R) -> None:
        """After the batch's transaction committed: count it (metrics, progress)."""

    def undecodable(self, topic: str, partition: int, offset: int, exc: SchemaError) -> None:
        """A record passed over because it does not decode: logged, never retried."""
        self.log.error(
            self.undecodable_message,
            extra={"topic": topic, "partition": partition, "offset": offset, "error": str(exc)},
        )
