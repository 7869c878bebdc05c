"""The driver contract: what every delivery target implements."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

import httpx
import orjson
from pydantic import BaseModel

from pim_hub.schemas.events import Job


@dataclass(frozen=True)
class MappingEntry:
    """A target id and when it last changed."""

    target_id: str
    updated_at: datetime


class EntityMappingService(Protocol):
    """Source key <-> target id, per integration and entity type."""

    async def get(self, entity_type: str, source_key: str) -> str | None:
        """The target id of one source key, or None."""

    async def get_many(self, entity_type: str, source_keys: list[str]) -> dict[str, str]:
        """Target ids of many source keys (missing ones are absent)."""

    async def put(self, entity_type: str, source_key: str, target_id: str) -> None:
        """Remember a mapping."""

    async def put_many(self, entity_type: str, pairs: dict[str, str]) -> None:
        """Remember many mappings."""

    async def source_for(self, entity_type: str, target_id: str) -> str | None:
        """The source key of a target id, or None."""

    async def get_entry(self, entity_type: str, source_key: str) -> MappingEntry | None:
        """The target id of one source key with the time it last changed, or None."""

    async def get_entries(
        self, entity_type: str, source_keys: list[str]
    ) -> dict[str, MappingEntry]:
        """Target ids with their time of last change (missing source keys are absent)."""

    async def remove(self, entity_type: str, source_key: str) -> bool:
        """Forget a mapping; False when there was none."""


class Metrics(Protocol):
    """What a driver may count; the dispatcher provides it."""

    def target_call(self, status: int | str) -> None:
        """Count one call to the target by status code (or an error kind)."""


class _NoMetrics:
    def target_call(self, status: int | str) -> None:
        return None


@dataclass
class IntegrationContext:
    """What a driver gets for one integration."""

    integration_id: str
    config: BaseModel
    mapping: EntityMappingService
    http: httpx.AsyncClient
    logger: logging.Logger
    metrics: Metrics = field(default_factory=_NoMetrics)


Outcome = Literal["delivered", "skipped", "failed"]


@dataclass(frozen=True)
class DeliveryResult:
    """What a delivery attempt came to."""

    outcome: Outcome
    reason: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    target_ref: str | None = None
    target_status: int | None = None
    target_response: str | None = None
    error_kind: str | None = None

    @classmethod
    def delivered(cls, target_ref: str | None = None) -> DeliveryResult:
        """The target has the change."""
        if target_ref is None and cls is DeliveryResult:
            return _DELIVERED  # immutable: one will do for every job
        return cls("delivered", target_ref=target_ref)

    @classmethod
    def skipped(cls, reason: str, target_ref: str | None = None) -> DeliveryResult:
        """Nothing to do for this target, and why."""
        return cls("skipped", reason=reason, target_ref=target_ref)

    @classmethod
    def retry(
        cls,
        reason: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        response: str | None = None,
        kind: str = "retryable",
    ) -> DeliveryResult:
        """A failure that may pass if tried again later (timeouts, 5xx, 429)."""
        return cls(
            "failed",
            reason=reason,
            retryable=True,
            retry_after=retry_after,
            target_status=status,
            target_response=response,
            error_kind=kind,
        )

    @classmethod
    def permanent(
        cls,
        reason: str,
        *,
        status: int | None = None,
        response: str | None = None,
        kind: str = "permanent",
    ) -> DeliveryResult:
        """A failure that trying again cannot fix (validation, missing mapping)."""
        return cls(
            "failed",
            reason=reason,
            retryable=False,
            target_status=status,
            target_response=response,
            error_kind=kind,
        )


_DELIVERED = DeliveryResult("delivered")


class Driver(ABC):
    """Base class of every driver; found through the `pim_hub.drivers` entry points."""

    name: ClassVar[str]
    key: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    supported_entity_types: ClassVar[frozenset[str]]
    config_model: ClassVar[type[BaseModel]]

    async def open(self, context: IntegrationContext) -> None:  # noqa: B027 - optional hook
        """Create clients for one integration."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""

    @abstractmethod
    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Deliver one job.

        The dispatcher's version guard may hand over a job carrying only the changes newer than
        what the target already has: build updates from `job.mutation.changes`; the mutation's
        `state` is the entity at this mutation's version and may hold fields the target has
        newer values for.
        """

    async def handle_batch(
        self, jobs: list[Job], context: IntegrationContext
    ) -> list[DeliveryResult]:
        """Deliver several jobs of one integration in one go; by default one by one, in order.

        A batch holds jobs of distinct entities (one entity's jobs never share a batch, so
        per-entity order holds); return exactly one result per job, in the same order.
        """
        return [await self.handle(job, context) for job in jobs]

    def wants_batches(self, context: IntegrationContext) -> bool:
        """Whether the dispatcher feeds this integration's jobs to handle_batch, a batch at a time.

        By default: when the driver overrides handle_batch. A driver may decide per
        integration (the Magento driver batches only with its async bulk API).
        """
        return type(self).handle_batch is not Driver.handle_batch

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> BaseModel:
        """The config as the driver's model; raises pydantic.ValidationError."""
        return cls.config_model.model_validate(config)


def decoded_changes(job: Job, include_values: bool = True) -> list[dict[str, Any]]:
    """The changes of a job as plain dicts, old/new decoded from their JSON text.

    Without values only which fields changed is kept (field, attribute, locale, scope).
    Raises orjson.JSONDecodeError when an old or new value is not JSON.
    """
    rows: list[dict[str, Any]] = []
    loads = orjson.loads
    for c in job.mutation.changes:
        row: dict[str, Any] = {
            "field": c.field,
            "attribute": c.attribute,
            "locale": c.locale,
            "scope": c.scope,
        }
        if include_values:
            row["old"] = loads(c.old) if c.old is not None else None
            row["new"] = loads(c.new) if c.new is not None else None
            if c.added is not None:
                row["added"] = c.added
            if c.removed is not None:
                row["removed"] = c.removed
        rows.append(row)
    return rows


def classify_http_status(status: int) -> Literal["ok", "retry", "permanent"]:
    """How a target's HTTP status reads: 2xx ok; 408, 425, 429 and 5xx retry; other 4xx permanent."""
    if 200 <= status < 300:
        return "ok"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "permanent"


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header given in seconds (HTTP dates are rare from APIs: ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
