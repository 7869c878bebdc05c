"""`hub schemas check|register`: the hub's Avro schemas against each other and a registry.

Locally, every event's current schema is checked against its released versions with Apache
Avro's own schema-resolution checker. Against a Schema Registry, each topic's value subject
(`<topic>-value`) is asked whether the current schema is compatible under the subject's
level, and `register` registers every released version in order, oldest first, so the
subject's history is the hub's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from pim_hub.runtime.kafka import settings_catalogue
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.contracts import contract, value_subject
from pim_hub.schemas.serde import Registry, SchemaVersion, all_versions

Level = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]
LEVELS: tuple[Level, ...] = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
#: The hub reads every released version (backward) and outside consumers keep reading
#: what it writes with the schema they have (forward): full, against every release.
DEFAULT_LEVEL: Level = "FULL_TRANSITIVE"


@dataclass
class SchemaReport:
    """One line per subject or event: what was found, and whether it is a problem."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is incompatible or refused."""
        return not self.problems

    def good(self, line: str) -> None:
        """Record a line that is fine."""
        self.lines.append(f"ok    {line}")

    def bad(self, line: str) -> None:
        """Record a problem."""
        self.lines.append(f"FAIL  {line}")
        self.problems.append(line)


def _reasons(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why data written with `writer` cannot be read with `reader` (empty: it can)."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    where = ", ".join(_field_path(reader, loc) for loc in result.locations if loc != "/")
    messages = [str(m) for m in result.messages] or ["incompatible"]
    return [f"{m} (field {where})" if where else m for m in messages]


def _field_path(schema: Any, pointer: str) -> str:
    """A JSON pointer into a schema (`/fields/0/type`) as field names (`event_id`)."""
    names: list[str] = []
    node = schema
    tokens = [t for t in pointer.split("/") if t]
    for index, token in enumerate(tokens):
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError, TypeError):
            return pointer
        if index > 0 and tokens[index - 1] == "fields" and isinstance(node, dict):
            names.append(str(node.get("name")))
    return ".".join(names) or pointer


def compatibility_problems(
    new: dict[str, Any], earlier: Sequence[dict[str, Any]], level: Level
) -> list[str]:
    """What keeps `new` from being compatible with `earlier` (oldest first) under `level`."""
    if level == "NONE" or not earlier:
        return []
    against = list(earlier) if level.endswith("_TRANSITIVE") else list(earlier[-1:])
    base = level.removesuffix("_TRANSITIVE")
    problems: list[str] = []
    for index, old in enumerate(against):
        name = f"version {len(earlier) - len(against) + index + 1}"
        if base in ("BACKWARD", "FULL"):
            problems += [f"new cannot read {name}: {r}" for r in _reasons(new, old)]
        if base in ("FORWARD", "FULL"):
            problems += [f"{name} cannot read new: {r}" for r in _reasons(old, new)]
    return problems


def check_local(
    level: Level = DEFAULT_LEVEL, versions: dict[str, list[SchemaVersion]] | None = None
) -> SchemaReport:
    """Each event's newest schema against its earlier released versions."""
    report = SchemaReport()
    for event, released in (versions or all_versions()).items():
        if not released:
            continue
        newest, earlier = released[-1], released[:-1]
        problems = compatibility_problems(newest.raw, [v.raw for v in earlier], level)
        label = f"{event} v{newest.version}"
        if problems:
            for problem in problems:
                report.bad(f"{label} ({level}): {problem}")
        elif earlier:
            report.good(f"{label}: {level} with v{', v'.join(str(v.version) for v in earlier)}")
        else:
            report.good(f"{label}: the only released version")
    return report


def avro_subjects(settings: Settings) -> list[tuple[str, str]]:
    """(subject, event) of every catalogue topic that carries one of the hub's Avro events."""
    out: dict[str, str] = {}
    for spec in settings_catalogue(settings):
        found = contract(spec.name)
        if found.avro:
            out[value_subject(spec.name)] = found.value
    return sorted(out.items())


def _status(exc: Exception) -> int:
    return int(getattr(exc, "http_status_code", 0) or 0)


def check_registry(registry: Registry, subjects: Iterable[tuple[str, str]]) -> SchemaReport:
    """Whether the registry's subjects accept the hub's current schemas, and which are new."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    report = SchemaReport()
    versions = all_versions()
    for subject, event in subjects:
        schema = Registry.schema_of(versions[event][-1])
        try:
            registered = registry.client.lookup_schema(subject, schema)
            report.good(
                f"{subject}: {event} is registered (id {registered.schema_id}, "
                f"version {registered.version})"
            )
            continue
        except SchemaRegistryError as exc:
            if _status(exc) != 404:
                report.bad(f"{subject}: the registry answered {exc}")
                continue
        try:
            compatible = registry.client.test_compatibility(
                subject, schema, version="latest", verbose=True
            )
        except SchemaRegistryError as exc:
            if exc.error_code == 40401:
                report.good(f"{subject}: new subject (`hub schemas register` creates it)")
            else:
                report.bad(f"{subject}: the registry answered {exc}")
            continue
        if compatible:
            report.good(f"{subject}: {event} is compatible with the latest version")
        else:
            report.bad(f"{subject}: {event} is incompatible with the subject's latest version")
    return report


def register(
    registry: Registry, subjects: Iterable[tuple[str, str]], level: Level | None = None
) -> SchemaReport:
    """Register every released version of each subject's event, oldest first.

    With a level, the subject's compatibility level is set first, so the registry enforces
    what `hub schemas check` checks.
    """
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    report = SchemaReport()
    versions = all_versions()
    for subject, event in subjects:
        if level is not None:
            try:
                registry.client.set_compatibility(subject, level)
            except SchemaRegistryError as exc:
                report.bad(f"{subject}: cannot set compatibility {level}: {exc}")
                continue
        ids: list[str] = []
        for version in versions[event]:
            try:
                schema_id = registry.client.register_schema(subject, Registry.schema_of(version))
            except SchemaRegistryError as exc:
                report.bad(f"{subject}: {event} v{version.version} refused: {exc}")
                break
            ids.append(f"v{version.version}=id {schema_id}")
        else:
            report.good(f"{subject}: {event} " + ", ".join(ids))
    return report
