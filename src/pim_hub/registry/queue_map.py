"""The queue map: named priorities (number, topic) and default rules, from settings or YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pim_hub.registry.priority import PriorityRules, override_problems
from pim_hub.schemas import topics
from pim_hub.schemas.errors import PermanentError

_DEFAULT_RULES = PriorityRules()


class PriorityLevel(BaseModel):
    """One named priority: its number (lower is more urgent) and its jobs topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: int = Field(ge=0)
    topic: str = Field(min_length=1)


def _default_levels() -> dict[str, PriorityLevel]:
    return {
        name: PriorityLevel(level=number, topic=topic)
        for name, (number, topic) in topics.PRIORITIES.items()
    }


class QueueMapConfig(BaseModel):
    """The queue map as written in YAML (every key optional; omitted ones keep the defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priorities: dict[str, PriorityLevel] = Field(default_factory=_default_levels)
    default: str = _DEFAULT_RULES.default
    entity_types: dict[str, str] = Field(default_factory=lambda: dict(_DEFAULT_RULES.entity_types))
    operations: dict[str, str] = Field(default_factory=lambda: dict(_DEFAULT_RULES.operations))
    fields: dict[str, str] = Field(default_factory=lambda: dict(_DEFAULT_RULES.fields))
    attributes: dict[str, str] = Field(default_factory=lambda: dict(_DEFAULT_RULES.attributes))
    price_collections: str | None = _DEFAULT_RULES.price_collections

    @model_validator(mode="after")
    def _names_are_defined(self) -> QueueMapConfig:
        if not self.priorities:
            raise ValueError("priorities: at least one priority is needed")
        seen: dict[str, str] = {}
        for name, prio in self.priorities.items():
            if prio.topic in seen:
                raise ValueError(
                    f"priorities: {name} and {seen[prio.topic]} share the topic {prio.topic}"
                )
            seen[prio.topic] = name
        levels = {name: p.level for name, p in self.priorities.items()}
        problems = override_problems(
            {
                "default": self.default,
                "price_collections": self.price_collections,
                "entity_types": self.entity_types,
                "operations": self.operations,
                "fields": self.fields,
                "attributes": self.attributes,
            },
            levels,
        )
        if problems:
            # Same wording as for an integration's map, without its prefix.
            raise ValueError("; ".join(p.removeprefix("priority_map.") for p in problems))
        return self


class QueueMapError(PermanentError, ValueError):
    """A queue map that cannot be used, with the reasons."""


@dataclass(frozen=True)
class QueueMap:
    """Resolved queue map: the rules, the levels and the topic of each priority."""

    rules: PriorityRules
    levels: dict[str, int]
    topics: dict[str, str]

    def topic(self, priority: str) -> str:
        """The jobs topic of a priority name."""
        try:
            return self.topics[priority]
        except KeyError as exc:
            raise ValueError(
                f"unknown priority {priority!r}; known: {', '.join(self.topics)}"
            ) from exc

    def override_problems(self, priority_map: Any) -> list[str]:
        """Why an integration's priority_map does not fit this queue map."""
        return override_problems(priority_map, self.levels)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view (for `hub` output and logs)."""
        return {
            "priorities": {
                name: {"level": self.levels[name], "topic": self.topics[name]}
                for name in sorted(self.levels, key=lambda n: self.levels[n])
            },
            "default": self.rules.default,
            "entity_types": dict(self.rules.entity_types),
            "operations": dict(self.rules.operations),
            "fields": dict(self.rules.fields),
            "attributes": dict(self.rules.attributes),
            "price_collections": self.rules.price_collections,
        }


def queue_map_from_config(config: QueueMapConfig) -> QueueMap:
    """A QueueMap of a validated config."""
    return QueueMap(
        rules=PriorityRules(
            entity_types=dict(config.entity_types),
            operations=dict(config.operations),
            fields=dict(config.fields),
            attributes=dict(config.attributes),
            price_collections=config.price_collections,
            default=config.default,
        ),
        levels={name: p.level for name, p in config.priorities.items()},
        topics={name: p.topic for name, p in config.priorities.items()},
    )


def parse_queue_map(data: Mapping[str, Any] | None) -> QueueMap:
    """A QueueMap from a mapping (a parsed YAML document); None gives the defaults.

    Raises:
        QueueMapError: unknown keys, undefined priority names, shared topics.
    """
    try:
        config = QueueMapConfig.model_validate(dict(data or {}))
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(queue map)'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise QueueMapError("invalid queue map:\n  - " + "\n  - ".join(lines)) from exc
    return queue_map_from_config(config)


def load_queue_map(path: str | Path | None = None) -> QueueMap:
    """The queue map of a YAML file (its top level, or its `queue_map:` key); None: defaults.

    Raises:
        QueueMapError: the file cannot be read or is not a valid queue map.
    """
    if path is None:
        return parse_queue_map(None)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise QueueMapError(f"cannot read queue map {path}: {exc}") from exc
    if data is not None and not isinstance(data, Mapping):
        raise QueueMapError(f"queue map {path}: the top level must be a mapping")
    if isinstance(data, Mapping) and "queue_map" in data:
        data = data["queue_map"]
    return parse_queue_map(data)


def queue_map_from_settings(settings: Any) -> QueueMap:
    """The queue map named by the settings (`queue_map_file`, env HUB_QUEUE_MAP_FILE).

    Settings without that field (or with it unset) give the built-in defaults.
    """
    return load_queue_map(getattr(settings, "queue_map_file", None))
