"""Records ready for the serde, built the same way by every writer (ingest, CLI, tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

Json = dict[str, Any]


def snapshot_record(
    entity_type: str,
    key: str,
    payload: Json | None,
    version: str | None,
    origin: str,
    *,
    event_id: str | None = None,
    delta: Any = None,
    received_at: datetime | None = None,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """A Snapshot record ready for the serde; payload None (and no delta) is a tombstone."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "entity_type": entity_type,
        "entity_key": key,
        "source_version": version,
        "origin": origin,
        "payload": orjson.dumps(payload).decode() if payload is not None else None,
        "delta": orjson.dumps(delta).decode() if delta is not None else None,
        "received_at": received_at or datetime.now(UTC),
        "correlation_id": correlation_id,
    }
