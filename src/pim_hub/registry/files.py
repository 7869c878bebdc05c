"""Declarative integration files (YAML): specs with ${ENV} references for secrets."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pim_hub.registry.model import Integration, IntegrationError
from pim_hub.registry.validation import validation_problems


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
