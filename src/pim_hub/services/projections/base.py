"""The loop every PostgreSQL projector runs: consume a batch, decode it, write it, then commit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pim_hub.runtime import metrics
from pim_hub.runtime.kafka import consumer_config
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.errors import SchemaError
from pim_hub.schemas.serde import Serde

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: Writes one batch of decoded records through a cursor of the batch's transaction.
Write = Callable[[psycopg.Cursor[Any], list[dict[str, Any]]], R]
#: (topic, partition) -> the next offset to read, i.e. what to commit.
Offsets = dict[tuple[str, int], int]


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
    #: Where the loop logs (the projector's own module logger keeps its log records' name).
    log: ClassVar[logging.Logger] = logger
    #: The log message for a record passed over because it does not decode.
    undecodable_message: ClassVar[str] = "undecodable record not projected"
    #: At most this many records a batch; wait at most this long for the first one.
    batch_size: ClassVar[int] = 500
    poll_timeout_s: ClassVar[float] = 0.2

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
            metrics.start_from_env(self.metrics_service)
        consumer = Consumer(consumer_config(self.settings, self.group))
        consumer.subscribe([self.topic])
        conn = psycopg.connect(self.settings.require_database(), autocommit=True)
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(self.batch_size, self.poll_timeout_s)
                if msgs:
                    self.handle(consumer, conn, msgs)
        finally:
            # Closing leaves the group at once, so the partitions move without a timeout.
            consumer.close()
            conn.close()

    def handle(
        self, consumer: Consumer, conn: psycopg.Connection[Any], msgs: list[Message]
    ) -> None:
        """Project one batch of messages, then commit past them."""
        records, offsets = self.decode(msgs)
        if records:
            self.written(records, write_batch(conn, self.write, records))
        if offsets:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )

    def decode(self, msgs: list[Message]) -> tuple[list[dict[str, Any]], Offsets]:
        """The decoded records of a batch, in log order, and the offsets that pass it."""
        records: list[dict[str, Any]] = []
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
        return records, offsets

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
