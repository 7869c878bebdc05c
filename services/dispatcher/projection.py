"""Projects hub.delivery-status into PostgreSQL: the latest status of every job."""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition

from hub import metrics
from hub.kafka import consumer_config
from hub.settings import Settings
from schemas import topics
from schemas.errors import SchemaError
from schemas.serde import Serde

logger = logging.getLogger(__name__)

GROUP = "hub.projector.deliveries"

UPSERT = """
INSERT INTO deliveries (job_id, mutation_id, integration_id, driver, entity_key, priority,
                        status, attempt, error_kind, error_message, target_ref, duration_ms,
                        occurred_at)
VALUES (%(job_id)s, %(mutation_id)s, %(integration_id)s, %(driver)s, %(entity_key)s,
        %(priority)s, %(status)s, %(attempt)s, %(error_kind)s, %(error_message)s,
        %(target_ref)s, %(duration_ms)s, %(occurred_at)s)
ON CONFLICT (job_id) DO UPDATE SET
    mutation_id = EXCLUDED.mutation_id, status = EXCLUDED.status, attempt = EXCLUDED.attempt,
    error_kind = EXCLUDED.error_kind, error_message = EXCLUDED.error_message,
    target_ref = EXCLUDED.target_ref, duration_ms = EXCLUDED.duration_ms,
    occurred_at = EXCLUDED.occurred_at, priority = EXCLUDED.priority, projected_at = now()
-- Statuses may be re-read after a restart: an older one never replaces a newer one. Time
-- alone orders them: a redrive starts a dead job again at attempt 1.
WHERE EXCLUDED.occurred_at >= deliveries.occurred_at
"""


def project(conn: psycopg.Connection[Any], records: list[dict[str, Any]]) -> None:
    """Upsert a batch of decoded DeliveryStatus records in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(UPSERT, records)


class Projector:
    """A consumer group that keeps the deliveries table up to date."""

    def __init__(self, settings: Settings, group: str = GROUP) -> None:
        self.settings = settings
        self.group = group
        self.serde = Serde(settings.schema_registry_url)
        self._stop = threading.Event()
        self.projected = 0

    def stop(self) -> None:
        """Finish the batch in hand and leave."""
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped; commit only after the rows are written."""
        metrics.start_from_env("projector")
        consumer = Consumer(consumer_config(self.settings, self.group))
        consumer.subscribe([topics.DELIVERY_STATUS])
        conn = psycopg.connect(self.settings.require_database(), autocommit=True)
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(500, 0.2)
                if not msgs:
                    continue
                records = []
                offsets: dict[tuple[str, int], int] = {}
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            logger.warning("consumer error", extra={"error": str(err)})
                        continue
                    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                    assert topic is not None and partition is not None and offset is not None
                    offsets[(topic, partition)] = offset + 1
                    try:
                        records.append(
                            self.serde.decode("DeliveryStatus", msg.value(), topic=topic)
                        )
                    except SchemaError as exc:
                        logger.error(
                            "undecodable delivery status skipped",
                            extra={"partition": partition, "offset": offset, "error": str(exc)},
                        )
                if records:
                    project(conn, records)
                    self.projected += len(records)
                    for r in records:
                        metrics.PROJECTOR_STATUSES.labels(r["status"]).inc()
                consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                )
        finally:
            consumer.close()
            conn.close()
