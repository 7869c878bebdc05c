"""Snapshot records (Avro `Snapshot`) built from Akeneo resources, events and deletions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pim_hub.schemas.entities import entity_key
from pim_hub.schemas.records import snapshot_record
from pim_hub.services.ingest.events import Json, clean_resource


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
