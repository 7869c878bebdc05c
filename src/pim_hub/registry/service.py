"""The registry: reads and changes integrations, validating every write and publishing it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel

from pim_hub.drivers.discovery import DriverCatalogue
from pim_hub.registry.changes import (
    ChangePublisher,
    RegistryChange,
    changed_fields,
    integration_event,
)
from pim_hub.registry.files import IntegrationSpec
from pim_hub.registry.model import Integration, IntegrationError
from pim_hub.registry.priority import DEFAULT_LEVELS
from pim_hub.registry.secrets import mask_config
from pim_hub.registry.store import _UPSERT, _params, _row, get_integration, list_integrations
from pim_hub.registry.validation import validate, with_driver_types

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

    def _model(self, driver: str) -> type[BaseModel] | None:
        cls = self.catalogue.drivers.get(driver)
        return cls.config_model if cls else None

    def reseal(self) -> int:
        """Write every integration again, its secrets sealed with the first HUB_SECRETS_KEY
        (after a key rotation, or to seal what was stored before a key was set); how many."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            rows = conn.execute("SELECT * FROM integrations ORDER BY id FOR UPDATE").fetchall()
            for r in rows:
                integ = _row(r)
                conn.execute(
                    "UPDATE integrations SET config = %s WHERE id = %s",
                    (_params(integ, self._model(integ.driver))[4], integ.id),
                )
        return len(rows)

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
    ) -> RegistryChange:
        new = with_driver_types(self.catalogue, new)
        if old is not None and old.same_content(new):
            return RegistryChange(new.id, "unchanged")
        validate(self.catalogue, new, self.levels)
        row = conn.execute(_UPSERT, _params(new, self._model(new.driver))).fetchone()
        assert row is not None
        # Published before the commit: if the broker refuses, the database is not changed
        # either, and the command fails with the broker's error.
        self._publish(new.id, _row(row))
        if old is None:
            return RegistryChange(new.id, "created")
        return RegistryChange(new.id, "updated", tuple(changed_fields(old, new)))

    def _locked(self, conn: psycopg.Connection[Any], integration_id: str) -> Integration | None:
        row = conn.execute(
            "SELECT * FROM integrations WHERE id = %s FOR UPDATE", (integration_id,)
        ).fetchone()
        return _row(row) if row else None

    def add(self, integ: Integration) -> RegistryChange:
        """Create an integration; refused when the id exists (use update or apply)."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            if self._locked(conn, integ.id) is not None:
                raise IntegrationError(
                    f"integration {integ.id!r} exists; use `update` or `apply` to change it"
                )
            return self._write(conn, None, integ)

    def put(self, integ: Integration) -> RegistryChange:
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
    ) -> RegistryChange:
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

    def set_enabled(self, integration_id: str, enabled: bool) -> RegistryChange:
        """Enable or disable (fan-out follows within HUB_INTEGRATIONS_REFRESH_S)."""
        return self.update(integration_id, enabled=enabled)

    def remove(self, integration_id: str) -> RegistryChange:
        """Delete an integration and publish its tombstone."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            cur = conn.execute("DELETE FROM integrations WHERE id = %s", (integration_id,))
            if cur.rowcount == 0:
                raise IntegrationError(f"no integration {integration_id!r}")
            self._publish(integration_id, None)
        return RegistryChange(integration_id, "removed")

    def apply(
        self, specs: Iterable[IntegrationSpec], *, prune: bool = False, dry_run: bool = False
    ) -> list[RegistryChange]:
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
        changes: list[RegistryChange] = []
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            rows = conn.execute("SELECT * FROM integrations ORDER BY id FOR UPDATE").fetchall()
            current = {r["id"]: _row(r) for r in rows}
            for integ in wanted:
                old = current.get(integ.id)
                integ = with_driver_types(self.catalogue, integ)
                if dry_run:
                    if old is None:
                        changes.append(RegistryChange(integ.id, "created"))
                    elif old.same_content(integ):
                        changes.append(RegistryChange(integ.id, "unchanged"))
                    else:
                        changes.append(
                            RegistryChange(integ.id, "updated", tuple(changed_fields(old, integ)))
                        )
                    continue
                changes.append(self._write(conn, old, integ))
            if prune:
                for gone in sorted(set(current) - {i.id for i in wanted}):
                    if not dry_run:
                        conn.execute("DELETE FROM integrations WHERE id = %s", (gone,))
                        self._publish(gone, None)
                    changes.append(RegistryChange(gone, "removed"))
            if dry_run:
                conn.rollback()
        return changes

    def publish_all(self) -> int:
        """Publish every integration again (repairs the topic after an outage); returns how many."""
        integrations = self.all()
        for integ in integrations:
            self._publish(integ.id, integ)
        return len(integrations)


def upsert_integration(url: str, catalogue: DriverCatalogue, integ: Integration) -> None:
    """Create or replace an integration after validating it (not published: see Registry)."""
    validate(catalogue, integ)
    with psycopg.connect(url) as conn:
        cls = catalogue.drivers.get(integ.driver)
        model = cls.config_model if cls else None
        conn.execute(_UPSERT, _params(with_driver_types(catalogue, integ), model))
