"""Pydantic models: the in-process view of the Avro events in src/pim_hub/schemas/avro."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Origin = Literal["webhook", "event_platform", "sync", "external", "replay", "unknown"]
Operation = Literal["create", "update", "delete"]
Status = Literal["delivered", "skipped", "retrying", "dead"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_record(self) -> dict[str, Any]:
        """The dict fastavro writes."""
        return self.model_dump()


class Snapshot(_Event):
    """The full state of one entity as the source saw it, or its deletion (payload None)."""

    event_id: str
    entity_type: str
    entity_key: str
    source_version: str | None = None
    origin: Origin = "unknown"
    payload: str | None = None
    delta: str | None = None
    received_at: datetime
    correlation_id: str | None = None


class Change(_Event):
    """One changed field of a mutation; old/new are JSON text."""

    field: str
    attribute: str | None = None
    locale: str | None = None
    scope: str | None = None
    old: str | None = None
    new: str | None = None
    added: list[str] | None = None
    removed: list[str] | None = None


class Mutation(_Event):
    """A field-level change of one entity, derived from a snapshot."""

    mutation_id: str
    entity_type: str
    entity_key: str
    operation: Operation
    changes: list[Change]
    state: str | None = None
    version: str | None = None
    causation_id: str
    correlation_id: str | None = None
    origin: str = "unknown"
    source_received_at: datetime
    created_at: datetime


class Job(_Event):
    """One mutation to deliver to one integration."""

    job_id: str
    mutation: Mutation
    integration_id: str
    driver: str
    priority: str
    attempt: int = 1
    mode: str = "live"
    not_before: datetime | None = None
    last_error: str | None = None
    created_at: datetime


class DeliveryStatus(_Event):
    """What happened when a job was delivered (or not) to its integration."""

    job_id: str
    mutation_id: str
    integration_id: str
    driver: str
    entity_key: str
    priority: str
    status: Status
    attempt: int
    error_kind: str | None = None
    error_message: str | None = None
    target_ref: str | None = None
    duration_ms: float = 0.0
    source_received_at: datetime | None = None
    occurred_at: datetime
    operation: Operation | None = None  # None in statuses written before schema v2


class Patch(_Event):
    """Values one source owns for one entity, by identifier (pim_hub.schemas.ownership)."""

    event_id: str
    source: str
    entity_type: str
    identifier: str
    mode: Literal["patch", "replace"] = "patch"
    version: str | None = None
    payload: str
    received_at: datetime
    correlation_id: str | None = None


MODELS: dict[str, type[_Event]] = {
    "Snapshot": Snapshot,
    "Mutation": Mutation,
    "Job": Job,
    "DeliveryStatus": DeliveryStatus,
    "Patch": Patch,
}
