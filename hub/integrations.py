"""The integration registry in PostgreSQL: each integration is a driver with its config.

Every change is also published to the compacted topic `hub.integrations`, keyed by the
integration id, as a JSON document (`application/json`, see `integration_event`) whose secrets
are masked; removing an integration publishes a tombstone (null value). PostgreSQL stays the
source of truth: the mutator's fan-out and the dispatchers reload the table every
HUB_INTEGRATIONS_REFRESH_S seconds, and `hub integrations publish` re-publishes every row.
"""

from __future__ import annotations

import logging
import os
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, ValidationError

from drivers.base import Driver
from drivers.discovery import DriverCatalogue
from services.mutator.core.fanout import IntegrationTarget
from services.mutator.core.priority import DEFAULT_LEVELS, override_problems

logger = logging.getLogger(__name__)

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: Config keys whose values are never shown or published, whatever the driver's model says.
SECRET_KEY_RE = re.compile(
    r"secret|passw|token|api[_-]?key|credential|private[_-]?key|authorization|dsn", re.I
)
MASK = "********"
EVENT_SCHEMA = "pim-hub.integration/1"


class IntegrationError(Exception):
    """An integration that cannot be written as asked, with the reasons."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        base = super().__str__()
        return base + "".join(f"\n  - {p}" for p in self.problems)


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

    def target(self, catalogue: DriverCatalogue) -> IntegrationTarget | None:
        """What fan-out needs; None when the driver is not installed."""
        cls = catalogue.drivers.get(self.driver)
        if cls is None:
            return None
        return IntegrationTarget(
            integration_id=self.id,
            driver=self.driver,
            enabled=self.enabled,
            supported_entity_types=cls.supported_entity_types,
            entity_types=frozenset(self.entity_types) if self.entity_types else None,
            priority_map=self.priority_map or None,
        )

    def same_content(self, other: Integration) -> bool:
        """True when both describe the same integration (timestamps and revision aside)."""
        return _content(self) == _content(other)


def _content(i: Integration) -> tuple[Any, ...]:
    types_ = sorted(i.entity_types) if i.entity_types else None
    return (i.id, i.name, i.driver, i.enabled, i.config, types_, i.priority_map or {})


# --- secrets ---------------------------------------------------------------------------------


def _is_secret_type(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_is_secret_type(a) for a in typing.get_args(annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def secret_fields(model: type[BaseModel] | None) -> set[str]:
    """Names (and aliases) of a config model's SecretStr/SecretBytes fields."""
    if model is None:
        return set()
    names = set()
    for name, info in model.model_fields.items():
        if _is_secret_type(info.annotation):
            names.add(name)
            if info.alias:
                names.add(info.alias)
    return names


def mask_config(config: Any, model: type[BaseModel] | None = None) -> Any:
    """The config with every secret value replaced by a mask (null values stay null).

    Secret are the model's SecretStr/SecretBytes fields (nested models included) and any key
    whose name looks like a secret (password, token, api_key, authorization, dsn, ...).
    """
    if isinstance(config, list):
        return [mask_config(v, model) for v in config]
    if not isinstance(config, Mapping):
        return config
    secrets = secret_fields(model)
    fields = model.model_fields if model is not None else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is not None and (key in secrets or SECRET_KEY_RE.search(str(key))):
            out[key] = MASK
            continue
        info = fields.get(key)
        out[key] = mask_config(value, _nested_model(info.annotation) if info else None)
    return out


# --- validation ------------------------------------------------------------------------------


def validation_problems(exc: ValidationError) -> list[str]:
    """One line per bad field, never echoing the value (it may be a secret)."""
    return [f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()]


def _unknown_keys(model: type[BaseModel], config: Mapping[str, Any]) -> list[str]:
    # Models that ignore extra keys would silently accept a typo such as `ulr`: refuse it here.
    if model.model_config.get("extra") == "allow":
        return []
    known = set(model.model_fields)
    known.update(f.alias for f in model.model_fields.values() if f.alias)
    return [f"{key}: unknown field" for key in config if key not in known]


def config_problems(cls: type[Driver], config: Any) -> list[str]:
    """Why a config does not fit a driver's config_model (empty when it does)."""
    if not isinstance(config, Mapping):
        return ["(config): must be an object"]
    # `rate_limit` belongs to the dispatcher, not to the driver: checked here, hidden from it.
    from services.dispatcher.core.limits import CONFIG_KEY, InvalidRateLimit, RateLimit

    problems: list[str] = []
    if CONFIG_KEY in config:
        try:
            RateLimit.from_config(config, default_concurrent=1)
        except InvalidRateLimit as exc:
            problems.append(str(exc))
        config = {k: v for k, v in config.items() if k != CONFIG_KEY}
    problems += _unknown_keys(cls.config_model, config)
    try:
        cls.validate_config(dict(config))
    except ValidationError as exc:
        problems = validation_problems(exc) + problems
    return problems


def validate(
    catalogue: DriverCatalogue, integ: Integration, levels: Mapping[str, int] = DEFAULT_LEVELS
) -> None:
    """Refuse an integration whose id, driver, config, filter or priority map is wrong.

    Raises:
        IntegrationError: with one line per problem.
    """
    if not ID_RE.match(integ.id):
        raise IntegrationError(
            f"integration id {integ.id!r} must be lowercase letters, digits, '_', '.', '-'"
            " (at most 63, starting with a letter or digit)"
        )
    try:
        cls = catalogue.get(integ.driver)
    except LookupError as exc:
        raise IntegrationError(f"integration {integ.id}: {exc}") from exc
    problems = [f"config.{p}" for p in config_problems(cls, integ.config)]
    if integ.entity_types is not None:
        if not integ.entity_types:
            problems.append("entity_types: empty (omit it to take every type the driver handles)")
        unsupported = sorted(set(integ.entity_types) - cls.supported_entity_types)
        if unsupported:
            problems.append(
                f"entity_types: driver {integ.driver!r} does not handle {', '.join(unsupported)}"
                f" (it handles {', '.join(sorted(cls.supported_entity_types))})"
            )
    problems += override_problems(integ.priority_map, levels)
    if not integ.name.strip():
        problems.append("name: empty")
    if problems:
        raise IntegrationError(f"integration {integ.id} refused", problems)


# --- rows ------------------------------------------------------------------------------------


def _row(r: Mapping[str, Any]) -> Integration:
    return Integration(
        id=r["id"],
        name=r["name"],
        driver=r["driver"],
        enabled=r["enabled"],
        config=r["config"],
        entity_types=r["entity_types"],
        priority_map=r["priority_map"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        revision=r.get("revision", 0),
    )


def list_integrations(url: str) -> list[Integration]:
    """Every integration, by id."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM integrations ORDER BY id").fetchall()
    return [_row(r) for r in rows]


def get_integration(url: str, integration_id: str) -> Integration | None:
    """One integration, or None."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM integrations WHERE id = %s", (integration_id,)).fetchone()
    return _row(row) if row else None


_UPSERT = """
    INSERT INTO integrations (id, name, driver, enabled, config, entity_types, priority_map)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (id) DO UPDATE SET
        name = EXCLUDED.name, driver = EXCLUDED.driver, enabled = EXCLUDED.enabled,
        config = EXCLUDED.config, entity_types = EXCLUDED.entity_types,
        priority_map = EXCLUDED.priority_map, updated_at = now(),
        revision = integrations.revision + 1
    RETURNING *
"""


def _params(integ: Integration) -> tuple[Any, ...]:
    return (
        integ.id,
        integ.name,
        integ.driver,
        integ.enabled,
        Jsonb(integ.config),
        sorted(integ.entity_types) if integ.entity_types else None,
        Jsonb(integ.priority_map or {}),
    )


def upsert_integration(url: str, catalogue: DriverCatalogue, integ: Integration) -> None:
    """Create or replace an integration after validating it (not published: see Registry)."""
    validate(catalogue, integ)
    with psycopg.connect(url) as conn:
        conn.execute(_UPSERT, _params(integ))


def set_enabled(url: str, integration_id: str, enabled: bool) -> bool:
    """Enable or disable; False when there is no such integration (not published)."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "UPDATE integrations SET enabled = %s, updated_at = now(), revision = revision + 1"
            " WHERE id = %s AND enabled <> %s",
            (enabled, integration_id, enabled),
        )
        if cur.rowcount == 1:
            return True
        row = conn.execute("SELECT 1 FROM integrations WHERE id = %s", (integration_id,))
        return row.fetchone() is not None


# Integrations whose driver is missing were reported once per process (not every refresh).
_missing_reported: set[tuple[str, str]] = set()


async def load_targets_async(url: str, catalogue: DriverCatalogue) -> list[IntegrationTarget]:
    """Fan-out view of every integration (disabled ones included, flagged).

    Integrations whose driver is not installed in this process get no jobs; each is logged once.
    """
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT * FROM integrations ORDER BY id")
        rows = await cur.fetchall()
    targets = []
    for r in rows:
        integ = _row(r)
        target = integ.target(catalogue)
        if target is None:
            if integ.enabled and (integ.id, integ.driver) not in _missing_reported:
                _missing_reported.add((integ.id, integ.driver))
                logger.error(
                    "integration skipped by fan-out: driver not installed",
                    extra={"integration_id": integ.id, "driver": integ.driver},
                )
            continue
        targets.append(target)
    return targets


# --- change events ---------------------------------------------------------------------------


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


# --- the registry ----------------------------------------------------------------------------

Action = Literal["created", "updated", "unchanged", "removed"]


@dataclass(frozen=True)
class Change:
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
    return out


class IntegrationSpec(BaseModel):
    """One integration as declared in a file or on the command line."""

    model_config = ConfigDict(extra="forbid")

    id: str
    driver: str
    name: str | None = None
    enabled: bool = True
    config: dict[str, Any] = Field(default_factory=dict)
    entity_types: list[str] | None = None
    priority_map: dict[str, Any] = Field(default_factory=dict)

    def integration(self) -> Integration:
        """The registry row this spec asks for."""
        return Integration(
            id=self.id,
            name=self.name or self.id,
            driver=self.driver,
            enabled=self.enabled,
            config=self.config,
            entity_types=sorted(self.entity_types) if self.entity_types is not None else None,
            priority_map=self.priority_map,
        )


class IntegrationsFile(BaseModel):
    """A declarative file: `integrations: [ {id, driver, config, ...}, ... ]`."""

    model_config = ConfigDict(extra="forbid")

    integrations: list[IntegrationSpec] = Field(default_factory=list)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, environ: Mapping[str, str], missing: list[str], path: str = "") -> Any:
    """Replace ${NAME} and ${NAME:-default} in every string (so secrets stay out of git)."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            missing.append(f"{path or '(value)'}: environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, environ, missing, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {
            k: expand_env(v, environ, missing, f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    return value


def parse_integrations_file(
    data: Any, environ: Mapping[str, str] | None = None
) -> list[IntegrationSpec]:
    """The specs of a parsed YAML document, with ${ENV} references expanded.

    Raises:
        IntegrationError: the document is malformed, names an id twice or an unset variable.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise IntegrationError("the file must be a mapping with an `integrations:` list")
    missing: list[str] = []
    expanded = expand_env(data, os.environ if environ is None else environ, missing)
    if missing:
        raise IntegrationError("the file refers to unset environment variables", missing)
    try:
        parsed = IntegrationsFile.model_validate(expanded)
    except ValidationError as exc:
        raise IntegrationError(
            "the file is not a valid integrations file", validation_problems(exc)
        ) from exc
    ids = [s.id for s in parsed.integrations]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise IntegrationError("the file declares an id more than once", dupes)
    return parsed.integrations


UNSET: Any = object()


class Registry:
    """Reads and changes integrations; validates every write and publishes every change."""

    def __init__(
        self,
        url: str,
        catalogue: DriverCatalogue,
        publisher: ChangePublisher | None = None,
        levels: Mapping[str, int] = DEFAULT_LEVELS,
    ) -> None:
        self.url = url
        self.catalogue = catalogue
        self.publisher = publisher
        self.levels = dict(levels)

    # reading

    def all(self) -> list[Integration]:
        """Every integration, by id."""
        return list_integrations(self.url)

    def get(self, integration_id: str) -> Integration:
        """One integration, or IntegrationError."""
        found = get_integration(self.url, integration_id)
        if found is None:
            raise IntegrationError(f"no integration {integration_id!r}")
        return found

    def masked_config(self, integ: Integration) -> Any:
        """The integration's config as it may be shown."""
        cls = self.catalogue.drivers.get(integ.driver)
        return mask_config(integ.config, cls.config_model if cls else None)

    def event(self, integ: Integration) -> dict[str, Any]:
        """The hub.integrations document of an integration."""
        return integration_event(integ, self.catalogue)

    # writing

    def _publish(self, integration_id: str, integ: Integration | None) -> None:
        if self.publisher is not None:
            self.publisher.publish(integration_id, self.event(integ) if integ else None)

    def _write(
        self, conn: psycopg.Connection[Any], old: Integration | None, new: Integration
    ) -> Change:
        if old is not None and old.same_content(new):
            return Change(new.id, "unchanged")
        validate(self.catalogue, new, self.levels)
        row = conn.execute(_UPSERT, _params(new)).fetchone()
        assert row is not None
        # Published before the commit: if the broker refuses, the database is not changed
        # either, and the command fails with the broker's error.
        self._publish(new.id, _row(row))
        if old is None:
            return Change(new.id, "created")
        return Change(new.id, "updated", tuple(changed_fields(old, new)))

    def _locked(self, conn: psycopg.Connection[Any], integration_id: str) -> Integration | None:
        row = conn.execute(
            "SELECT * FROM integrations WHERE id = %s FOR UPDATE", (integration_id,)
        ).fetchone()
        return _row(row) if row else None

    def add(self, integ: Integration) -> Change:
        """Create an integration; refused when the id exists (use update or apply)."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            if self._locked(conn, integ.id) is not None:
                raise IntegrationError(
                    f"integration {integ.id!r} exists; use `update` or `apply` to change it"
                )
            return self._write(conn, None, integ)

    def put(self, integ: Integration) -> Change:
        """Create or replace an integration as a whole."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            return self._write(conn, self._locked(conn, integ.id), integ)

    def update(
        self,
        integration_id: str,
        *,
        name: str | None = None,
        driver: str | None = None,
        enabled: bool | None = None,
        config: Mapping[str, Any] | None = None,
        replace_config: bool = False,
        entity_types: list[str] | None = UNSET,
        priority_map: Mapping[str, Any] | None = None,
    ) -> Change:
        """Change some fields; config keys are merged unless replace_config (null removes a key)."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            old = self._locked(conn, integration_id)
            if old is None:
                raise IntegrationError(f"no integration {integration_id!r}")
            new_config = dict(old.config)
            if config is not None:
                if replace_config:
                    new_config = dict(config)
                else:
                    for key, value in config.items():
                        if value is None:
                            new_config.pop(key, None)
                        else:
                            new_config[key] = value
            new = replace(
                old,
                name=old.name if name is None else name,
                driver=old.driver if driver is None else driver,
                enabled=old.enabled if enabled is None else enabled,
                config=new_config,
                entity_types=old.entity_types if entity_types is UNSET else entity_types,
                priority_map=old.priority_map if priority_map is None else dict(priority_map),
            )
            return self._write(conn, old, new)

    def set_enabled(self, integration_id: str, enabled: bool) -> Change:
        """Enable or disable (fan-out follows within HUB_INTEGRATIONS_REFRESH_S)."""
        return self.update(integration_id, enabled=enabled)

    def remove(self, integration_id: str) -> Change:
        """Delete an integration and publish its tombstone."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            cur = conn.execute("DELETE FROM integrations WHERE id = %s", (integration_id,))
            if cur.rowcount == 0:
                raise IntegrationError(f"no integration {integration_id!r}")
            self._publish(integration_id, None)
        return Change(integration_id, "removed")

    def apply(
        self, specs: Iterable[IntegrationSpec], *, prune: bool = False, dry_run: bool = False
    ) -> list[Change]:
        """Make the registry match the specs, in one transaction; idempotent.

        Every spec is validated first, so a file with one bad integration changes nothing.
        With prune, integrations the specs do not name are removed.
        """
        wanted = [s.integration() for s in specs]
        problems: list[str] = []
        for integ in wanted:
            try:
                validate(self.catalogue, integ, self.levels)
            except IntegrationError as exc:
                problems += [str(exc).replace("\n  - ", "\n    - ")]
        if problems:
            raise IntegrationError("nothing applied", problems)
        changes: list[Change] = []
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            rows = conn.execute("SELECT * FROM integrations ORDER BY id FOR UPDATE").fetchall()
            current = {r["id"]: _row(r) for r in rows}
            for integ in wanted:
                old = current.get(integ.id)
                if dry_run:
                    if old is None:
                        changes.append(Change(integ.id, "created"))
                    elif old.same_content(integ):
                        changes.append(Change(integ.id, "unchanged"))
                    else:
                        changes.append(
                            Change(integ.id, "updated", tuple(changed_fields(old, integ)))
                        )
                    continue
                changes.append(self._write(conn, old, integ))
            if prune:
                for gone in sorted(set(current) - {i.id for i in wanted}):
                    if not dry_run:
                        conn.execute("DELETE FROM integrations WHERE id = %s", (gone,))
                        self._publish(gone, None)
                    changes.append(Change(gone, "removed"))
            if dry_run:
                conn.rollback()
        return changes

    def publish_all(self) -> int:
        """Publish every integration again (repairs the topic after an outage); returns how many."""
        integrations = self.all()
        for integ in integrations:
            self._publish(integ.id, integ)
        return len(integrations)


class KafkaChangePublisher:
    """Publishes registry changes to hub.integrations (key: integration id; value: JSON)."""

    def __init__(self, settings: Any, topic: str | None = None) -> None:
        from hub.kafka import make_producer
        from schemas import topics

        self.producer = make_producer(settings)
        self.topic = topic or topics.INTEGRATIONS

    def publish(self, integration_id: str, event: dict[str, Any] | None) -> None:
        """Write one change and wait for the broker's acknowledgement."""
        import orjson

        from hub.kafka import produce_sync

        value = orjson.dumps(event) if event is not None else None
        produce_sync(
            self.producer,
            self.topic,
            value,
            key=integration_id,
            headers=[("content-type", b"application/json"), ("schema", EVENT_SCHEMA.encode())],
        )


__all__ = [
    "Change",
    "ChangePublisher",
    "Integration",
    "IntegrationError",
    "IntegrationSpec",
    "KafkaChangePublisher",
    "Registry",
    "get_integration",
    "integration_event",
    "list_integrations",
    "load_targets_async",
    "mask_config",
    "parse_integrations_file",
    "set_enabled",
    "upsert_integration",
    "validate",
]
