"""Registry changes: what an operation did, and the documents published to hub.integrations.

Every change is published to the compacted topic `hub.integrations`, keyed by the
integration id, as a JSON document (`application/json`, see `integration_event`) whose secrets
are masked; removing an integration publishes a tombstone (null value). PostgreSQL stays the
source of truth: the mutator's fan-out and the dispatchers reload the table every
HUB_INTEGRATIONS_REFRESH_S seconds, and `hub integrations publish` re-publishes every row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pim_hub.drivers.discovery import DriverCatalogue
from pim_hub.registry.model import Integration
from pim_hub.registry.secrets import mask_config

EVENT_SCHEMA = "pim-hub.integration/1"

Action = Literal["created", "updated", "unchanged", "removed"]


def integration_event(
    integ: Integration, catalogue: DriverCatalogue | None = None
) -> dict[str, Any]:
    """The JSON document published to hub.integrations for one integration (secrets masked)."""
    model = None
    if catalogue is not None and integ.driver in catalogue.drivers:
        model = catalogue.drivers[integ.driver].config_model
    return {
        "schema": EVENT_SCHEMA,
        "id": integ.id,
        "name": integ.name,
        "driver": integ.driver,
        "enabled": integ.enabled,
        "entity_types": integ.entity_types,
        "priority_map": integ.priority_map or {},
        "config": mask_config(integ.config, model),
        "revision": integ.revision,
        "created_at": integ.created_at.isoformat() if integ.created_at else None,
        "updated_at": integ.updated_at.isoformat() if integ.updated_at else None,
    }


class ChangePublisher(Protocol):
    """Where registry changes go (the hub.integrations topic in production)."""

    def publish(self, integration_id: str, event: dict[str, Any] | None) -> None:
        """Publish one change (None: the integration was removed) and wait for the ack."""


@dataclass(frozen=True)
class RegistryChange:
    """What one registry operation did to one integration."""

    integration_id: str
    action: Action
    fields: tuple[str, ...] = ()

    def line(self) -> str:
        """Human-readable report line (field names only, never values)."""
        detail = f": {', '.join(self.fields)}" if self.fields else ""
        return f"{self.action:9} {self.integration_id}{detail}"


def _dict_diff(prefix: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                out.append(f"{prefix}.{key}")
            else:
                out += _dict_diff(f"{prefix}.{key}", old[key], new[key])
        return out
    return [] if old == new else [prefix]


def changed_fields(old: Integration, new: Integration) -> list[str]:
    """Names of what differs, config keys as dotted paths (values are never reported)."""
    out = [f for f in ("name", "driver", "enabled") if getattr(old, f) != getattr(new, f)]
    old_types = sorted(old.entity_types) if old.entity_types else None
    new_types = sorted(new.entity_types) if new.entity_types else None
    if old_types != new_types:
        out.append("entity_types")
    out += _dict_diff("config", old.config, new.config)
    out += _dict_diff("priority_map", old.priority_map or {}, new.priority_map or {})
    if old.driver_entity_types != new.driver_entity_types:
        out.append("driver_entity_types")  # the driver was upgraded, or the row predates them
    return out


class KafkaChangePublisher:
    """Publishes registry changes to hub.integrations (key: integration id; value: JSON)."""

    def __init__(self, settings: Any, topic: str | None = None) -> None:
        from pim_hub.runtime.kafka import make_producer
        from pim_hub.schemas import topics

        self.producer = make_producer(settings)
        self.topic = topic or topics.INTEGRATIONS

    def publish(self, integration_id: str, event: dict[str, Any] | None) -> None:
        """Write one change and wait for the broker's acknowledgement."""
        import orjson

        from pim_hub.runtime.kafka import produce_sync

        value = orjson.dumps(event) if event is not None else None
        produce_sync(
            self.producer,
            self.topic,
            value,
            key=integration_id,
            headers=[("content-type", b"application/json"), ("schema", EVENT_SCHEMA.encode())],
        )
