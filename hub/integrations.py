"""The integration registry in PostgreSQL: each integration is a driver with its config."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from drivers.discovery import DriverCatalogue
from services.mutator.core.fanout import IntegrationTarget

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class IntegrationError(Exception):
    """An integration that cannot be written as asked, with the reasons."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        base = super().__str__()
        return base + "".join(f"\n  - {p}" for p in self.problems)


@dataclass(frozen=True)
class Integration:
    """One row of the registry."""

    id: str
    name: str
    driver: str
    enabled: bool
    config: dict[str, Any]
    entity_types: list[str] | None
    priority_map: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def target(self, catalogue: DriverCatalogue) -> IntegrationTarget | None:
        """What fan-out needs; None when the driver is not installed."""
        cls = catalogue.drivers.get(self.driver)
        if cls is None:
            return None
        return IntegrationTarget(
            integration_id=self.id,
            driver=self.driver,
            enabled=self.enabled,
            supported_entity_types=cls.supported_entity_types,
            entity_types=frozenset(self.entity_types) if self.entity_types else None,
            priority_map=self.priority_map or None,
        )


def validation_problems(exc: ValidationError) -> list[str]:
    """One line per bad field, never echoing the value (it may be a secret)."""
    return [f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()]


def validate(catalogue: DriverCatalogue, integ: Integration) -> None:
    """Refuse an integration whose id, driver or config is wrong."""
    if not ID_RE.match(integ.id):
        raise IntegrationError(
            f"integration id {integ.id!r} must be lowercase letters, digits, '_', '.', '-'"
        )
    try:
        cls = catalogue.get(integ.driver)
    except LookupError as exc:
        raise IntegrationError(str(exc)) from exc
    try:
        cls.validate_config(integ.config)
    except ValidationError as exc:
        raise IntegrationError(
            f"invalid config for driver {integ.driver!r}", validation_problems(exc)
        ) from exc
    if integ.entity_types:
        unsupported = sorted(set(integ.entity_types) - cls.supported_entity_types)
        if unsupported:
            raise IntegrationError(
                f"driver {integ.driver!r} does not handle {', '.join(unsupported)}"
            )


def _row(r: dict[str, Any]) -> Integration:
    return Integration(
        id=r["id"],
        name=r["name"],
        driver=r["driver"],
        enabled=r["enabled"],
        config=r["config"],
        entity_types=r["entity_types"],
        priority_map=r["priority_map"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def list_integrations(url: str) -> list[Integration]:
    """Every integration, by id."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM integrations ORDER BY id").fetchall()
    return [_row(r) for r in rows]


def get_integration(url: str, integration_id: str) -> Integration | None:
    """One integration, or None."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM integrations WHERE id = %s", (integration_id,)).fetchone()
    return _row(row) if row else None


def upsert_integration(url: str, catalogue: DriverCatalogue, integ: Integration) -> None:
    """Create or replace an integration after validating it."""
    validate(catalogue, integ)
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            INSERT INTO integrations (id, name, driver, enabled, config, entity_types, priority_map)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (id) DO UPDATE SET
                name = EXCLUDED.name, driver = EXCLUDED.driver, enabled = EXCLUDED.enabled,
                config = EXCLUDED.config, entity_types = EXCLUDED.entity_types,
                priority_map = EXCLUDED.priority_map, updated_at = now()
            """,
            (
                integ.id,
                integ.name,
                integ.driver,
                integ.enabled,
                Jsonb(integ.config),
                integ.entity_types,
                Jsonb(integ.priority_map),
            ),
        )


def set_enabled(url: str, integration_id: str, enabled: bool) -> bool:
    """Enable or disable; False when there is no such integration."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "UPDATE integrations SET enabled = %s, updated_at = now() WHERE id = %s",
            (enabled, integration_id),
        )
        return cur.rowcount == 1


async def load_targets_async(url: str, catalogue: DriverCatalogue) -> list[IntegrationTarget]:
    """Fan-out view of every integration (disabled ones included, flagged)."""
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT * FROM integrations ORDER BY id")
        rows = await cur.fetchall()
    targets = [_row(r).target(catalogue) for r in rows]
    return [t for t in targets if t is not None]
