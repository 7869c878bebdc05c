"""Snapshot records (Avro `Snapshot`) built from Akeneo resources, events and deletions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from services.ingest.events import Json, clean_resource
from services.mutator.core.entities import entity_key


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


def resource_snapshot(
    entity_type: str,
    resource: Json,
    origin: str,
    *,
    event_id: str | None = None,
    received_at: datetime | None = None,
    correlation_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """(key, record) for a full resource read from Akeneo; version = its `updated`.

    Raises:
        InvalidSnapshot: the resource has no usable identity.
    """
    payload = clean_resource(entity_type, resource)
    key = entity_key(entity_type, payload)
    version = payload.get("updated") if isinstance(payload.get("updated"), str) else None
    record = snapshot_record(
        entity_type,
        key,
        payload,
        version,
        origin,
        event_id=event_id,
        received_at=received_at,
        correlation_id=correlation_id,
    )
    return key, record
