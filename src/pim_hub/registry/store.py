"""The registry's PostgreSQL tables: reading and writing integration rows."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from pim_hub.registry.model import Integration, IntegrationTarget
from pim_hub.registry.secrets import seal_config, unseal_config

logger = logging.getLogger(__name__)


def _row(r: Mapping[str, Any], open_secrets: bool = True) -> Integration:
    # Secrets are sealed at rest (HUB_SECRETS_KEY): opened here, so every reader (drivers,
    # validation, masking for display) sees the config as it was written. Fan-out reads no
    # config (open_secrets=False): it needs no key.
    return Integration(
        id=r["id"],
        name=r["name"],
        driver=r["driver"],
        enabled=r["enabled"],
        config=unseal_config(r["config"]) if open_secrets else r["config"],
        entity_types=r["entity_types"],
        priority_map=r["priority_map"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        revision=r.get("revision", 0),
        driver_entity_types=tuple(r["driver_entity_types"])
        if r.get("driver_entity_types")
        else None,
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


_UPSERT = """
    INSERT INTO integrations (
        id, name, driver, enabled, config, entity_types, priority_map, driver_entity_types
    )
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (id) DO UPDATE SET
        name = EXCLUDED.name, driver = EXCLUDED.driver, enabled = EXCLUDED.enabled,
        config = EXCLUDED.config, entity_types = EXCLUDED.entity_types,
        priority_map = EXCLUDED.priority_map,
        driver_entity_types = EXCLUDED.driver_entity_types, updated_at = now(),
        revision = integrations.revision + 1
    RETURNING *
"""


def _params(integ: Integration, model: type[BaseModel] | None = None) -> tuple[Any, ...]:
    """The _UPSERT parameters; secrets sealed when HUB_SECRETS_KEY is set (model: the
    driver's config model, whose secret fields are sealed whatever their names)."""
    return (
        integ.id,
        integ.name,
        integ.driver,
        integ.enabled,
        Jsonb(seal_config(integ.config, model)),
        sorted(integ.entity_types) if integ.entity_types else None,
        Jsonb(integ.priority_map or {}),
        list(integ.driver_entity_types) if integ.driver_entity_types else None,
    )


def set_enabled(url: str, integration_id: str, enabled: bool) -> bool:
    """Enable or disable; False when there is no such integration (not published)."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "UPDATE integrations SET enabled = %s, updated_at = now(), revision = revision + 1"
            " WHERE id = %s AND enabled <> %s",
            (enabled, integration_id, enabled),
        )
        if cur.rowcount == 1:
            return True
        row = conn.execute("SELECT 1 FROM integrations WHERE id = %s", (integration_id,))
        return row.fetchone() is not None


# Integrations written before the registry recorded driver types, reported once per process.
_unrecorded_reported: set[str] = set()


async def load_targets_async(url: str) -> list[IntegrationTarget]:
    """Fan-out view of every integration (disabled ones included, flagged).

    The entity types each driver takes come from the registry (recorded when the integration
    was written), so fan-out never imports a driver.
    """
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT * FROM integrations ORDER BY id")
        rows = await cur.fetchall()
    targets = []
    for r in rows:
        integ = _row(r, open_secrets=False)
        if integ.driver_entity_types is None and integ.id not in _unrecorded_reported:
            _unrecorded_reported.add(integ.id)
            logger.warning(
                "integration has no recorded driver entity types: every type is fanned out"
                " (run `hub integrations publish` with the driver installed to record them)",
                extra={"integration_id": integ.id, "driver": integ.driver},
            )
        targets.append(integ.target())
    return targets
