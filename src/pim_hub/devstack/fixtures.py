"""Synthetic records for the tests, the benchmarks and the demo (not the product)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson


def change(attribute: str, value: Any, locale: str | None = None) -> dict[str, Any]:
    """A Change record of one attribute value."""
    return {
        "field": "values",
        "attribute": attribute,
        "locale": locale,
        "scope": None,
        "old": None,
        "new": orjson.dumps(value).decode(),
        "added": None,
        "removed": None,
    }


def version(second: int) -> str:
    """A source version: a fixed day plus some seconds."""
    return datetime.fromtimestamp(1_700_000_000 + second, UTC).isoformat()


def job_record(
    integration_id: str,
    driver: str,
    priority: str,
    entity_key: str,
    changes: list[dict[str, Any]],
    source_version: str | None,
    operation: str = "update",
    mode: str = "live",
    job_id: str | None = None,
) -> dict[str, Any]:
    """A Job record ready for the serde."""
    now = datetime.now(UTC)
    mutation_id = str(uuid.uuid4())
    return {
        "job_id": job_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{mutation_id}/{integration_id}")),
        "mutation": {
            "mutation_id": mutation_id,
            "entity_type": entity_key.split(":", 1)[0],
            "entity_key": entity_key,
            "operation": operation,
            "changes": changes,
            "state": None,
            "version": source_version,
            "causation_id": mutation_id,
            "correlation_id": None,
            "origin": "external",
            "source_received_at": now,
            "created_at": now,
        },
        "integration_id": integration_id,
        "driver": driver,
        "priority": priority,
        "attempt": 1,
        "mode": mode,
        "not_before": None,
        "last_error": None,
        "created_at": now,
    }
