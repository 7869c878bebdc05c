"""Projects hub.delivery-status into PostgreSQL: the latest status of every job."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from pim_hub.runtime import metrics
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.services.projections.base import BatchProjector, write_batch

logger = logging.getLogger(__name__)

GROUP = "hub.projector.deliveries"

UPSERT = """
INSERT INTO deliveries (job_id, mutation_id, integration_id, driver, entity_key, priority,
                        status, attempt, error_kind, error_message, target_ref, duration_ms,
                        occurred_at, operation)
VALUES (%(job_id)s, %(mutation_id)s, %(integration_id)s, %(driver)s, %(entity_key)s,
        %(priority)s, %(status)s, %(attempt)s, %(error_kind)s, %(error_message)s,
        %(target_ref)s, %(duration_ms)s, %(occurred_at)s, %(operation)s)
ON CONFLICT (job_id) DO UPDATE SET
    mutation_id = EXCLUDED.mutation_id, status = EXCLUDED.status, attempt = EXCLUDED.attempt,
    error_kind = EXCLUDED.error_kind, error_message = EXCLUDED.error_message,
    target_ref = EXCLUDED.target_ref, duration_ms = EXCLUDED.duration_ms,
    occurred_at = EXCLUDED.occurred_at, priority = EXCLUDED.priority, projected_at = now(),
    -- A status written before schema v2 carries no operation: keep the one already known.
    operation = COALESCE(EXCLUDED.operation, deliveries.operation)
-- Statuses may be re-read after a restart: an older one never replaces a newer one. Time
-- alone orders them: a redrive starts a dead job again at attempt 1.
WHERE EXCLUDED.occurred_at >= deliveries.occurred_at
"""


def _write(cur: psycopg.Cursor[Any], records: list[dict[str, Any]]) -> None:
    # Records decoded by Serde have every field of the current schema; a caller's own dict
    # written before schema v2 may lack the operation.
    cur.executemany(UPSERT, [r if "operation" in r else {**r, "operation": None} for r in records])


def project(conn: psycopg.Connection[Any], records: list[dict[str, Any]]) -> None:
    """Upsert a batch of decoded DeliveryStatus records in one transaction."""
    write_batch(conn, _write, records)


class Projector(BatchProjector[None]):
    """A consumer group that keeps the deliveries table up to date."""

    topic = topics.DELIVERY_STATUS
    schema = "DeliveryStatus"
    metrics_service = "projector"
    stage = "projector.deliveries"
    log = logger
    undecodable_message = "undecodable delivery status skipped"

    def __init__(self, settings: Settings, group: str = GROUP) -> None:
        super().__init__(settings, group)
        self.projected = 0

    def write(self, cur: psycopg.Cursor[Any], records: list[dict[str, Any]]) -> None:
        """Upsert a batch of decoded statuses (inside the batch's transaction)."""
        _write(cur, records)

    def written(self, records: list[dict[str, Any]], result: None) -> None:
        """Count the batch's statuses (progress and pimhub_projector_statuses_total)."""
        self.projected += len(records)
        for r in records:
            metrics.PROJECTOR_STATUSES.labels(r["status"]).inc()
