"""Log driver: writes every job it is given to the `driver_log_deliveries` table, nothing else.

Point an integration at it to see what a real target would receive (which entities, which
fields, on which priority) without touching that target.
"""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pim_hub.drivers.base import DeliveryResult, Driver, IntegrationContext, decoded_changes
from pim_hub.schemas.events import Job

ALL_ENTITY_TYPES = frozenset(
    {
        "product",
        "product_model",
        "category",
        "family",
        "family_variant",
        "attribute",
        "attribute_option",
        "channel",
        "locale",
    }
)

_INSERT = """
    INSERT INTO driver_log_deliveries
        (job_id, integration_id, mutation_id, entity_type, entity_key, operation, priority,
         version, changes)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (job_id) DO UPDATE SET
        attempts = driver_log_deliveries.attempts + 1, last_delivered_at = now()
"""


class LogConfig(BaseModel):
    """Where to record deliveries."""

    model_config = ConfigDict(extra="forbid")

    dsn: SecretStr = Field(
        description="PostgreSQL URL of a hub database (it has the driver_log_deliveries table)"
    )
    include_values: bool = Field(
        True, description="record old/new values too; off: only which fields changed"
    )
    pool_size: int = Field(2, ge=1, le=32)


def change_rows(job: Job, include_values: bool) -> list[dict[str, Any]]:
    """The changes of a job as recorded (values decoded from their JSON text)."""
    return decoded_changes(job, include_values)


class LogDriver(Driver):
    """Records each job in driver_log_deliveries; a replayed job only bumps its attempt count."""

    name: ClassVar[str] = "Delivery log"
    key: ClassVar[str] = "log"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "record every change in PostgreSQL (dry-run target)"
    supported_entity_types: ClassVar[frozenset[str]] = ALL_ENTITY_TYPES
    config_model: ClassVar[type[BaseModel]] = LogConfig

    def __init__(self) -> None:
        self._pool: AsyncConnectionPool[Any] | None = None

    async def open(self, context: IntegrationContext) -> None:
        """Open a small connection pool on the configured database."""
        config = context.config
        assert isinstance(config, LogConfig)

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.set_autocommit(True)

        self._pool = AsyncConnectionPool(
            config.dsn.get_secret_value(),
            min_size=1,
            max_size=config.pool_size,
            configure=configure,
            open=False,
        )
        await self._pool.open(wait=False)

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Insert one row per job id; writing the same job again is safe (idempotent)."""
        config = context.config
        assert isinstance(config, LogConfig)
        if self._pool is None:
            return DeliveryResult.permanent("log driver used before open()", kind="not_open")
        m = job.mutation
        params = (
            job.job_id,
            job.integration_id,
            m.mutation_id,
            m.entity_type,
            m.entity_key,
            m.operation,
            job.priority,
            m.version,
            Jsonb(change_rows(job, config.include_values)),
        )
        try:
            async with self._pool.connection(timeout=10) as conn:
                await conn.execute(_INSERT, params)
        except psycopg.errors.UndefinedTable:
            return DeliveryResult.permanent(
                "table driver_log_deliveries is missing: run `hub db migrate` on that database",
                kind="schema",
            )
        except psycopg.OperationalError as exc:  # includes pool timeouts: try again later
            context.metrics.target_call("connection_error")
            return DeliveryResult.retry(
                f"database unavailable: {type(exc).__name__}", kind="connection"
            )
        except psycopg.Error as exc:
            context.metrics.target_call("error")
            return DeliveryResult.permanent(f"cannot record: {type(exc).__name__}", kind="database")
        context.metrics.target_call("ok")
        return DeliveryResult.delivered(target_ref=f"driver_log_deliveries/{job.job_id}")
