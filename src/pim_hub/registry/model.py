"""The integration model: one row of the registry, and what fan-out needs of it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pim_hub.schemas.errors import PermanentError

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class IntegrationError(PermanentError):
    """An integration that cannot be written as asked, with the reasons."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        base = super().__str__()
        return base + "".join(f"\n  - {p}" for p in self.problems)


@dataclass(frozen=True)
class IntegrationTarget:
    """What fan-out needs to know of one integration."""

    integration_id: str
    driver: str
    enabled: bool
    #: What the driver handles, as recorded when the integration was written; None: not
    #: recorded (a row from before it was), and fan-out sends every type (the dispatcher
    #: skips what its driver does not take).
    supported_entity_types: frozenset[str] | None
    entity_types: frozenset[str] | None = None  # None: all the driver supports
    priority_map: Mapping[str, Any] | None = None
    #: When the integration was last written (epoch ms; None: unknown): a mutation made
    #: before it may have made no job for it, so a job never names such a mutation's job as
    #: the one it must not overtake (pim_hub.schemas.ordering).
    active_since_ms: int | None = None


@dataclass(frozen=True)
class Integration:
    """One row of the registry."""

    id: str
    name: str
    driver: str
    enabled: bool
    config: dict[str, Any] = field(repr=False)  # may hold secrets: kept out of reprs and logs
    entity_types: list[str] | None
    priority_map: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    revision: int = 0
    #: The entity types the driver declared when the row was written (the registry records
    #: them so that fan-out need not import drivers); None when not recorded.
    driver_entity_types: tuple[str, ...] | None = None

    def target(self) -> IntegrationTarget:
        """What fan-out needs."""
        return IntegrationTarget(
            integration_id=self.id,
            driver=self.driver,
            enabled=self.enabled,
            supported_entity_types=(
                frozenset(self.driver_entity_types) if self.driver_entity_types else None
            ),
            entity_types=frozenset(self.entity_types) if self.entity_types else None,
            priority_map=self.priority_map or None,
            active_since_ms=(
                int(self.updated_at.timestamp() * 1000) if self.updated_at is not None else None
            ),
        )

    def same_content(self, other: Integration) -> bool:
        """True when both describe the same integration (timestamps and revision aside)."""
        return _content(self) == _content(other)


def _content(i: Integration) -> tuple[Any, ...]:
    types_ = sorted(i.entity_types) if i.entity_types else None
    return (
        i.id,
        i.name,
        i.driver,
        i.enabled,
        i.config,
        types_,
        i.priority_map or {},
        i.driver_entity_types,
    )
