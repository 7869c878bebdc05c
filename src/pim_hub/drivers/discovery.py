"""Finds drivers through the `pim_hub.drivers` entry points; a broken one never hides the others."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel

from pim_hub.drivers.base import Driver

logger = logging.getLogger(__name__)

GROUP = "pim_hub.drivers"
EXTRA_ENV = "HUB_EXTRA_DRIVERS"

_REQUIRED = ("name", "key", "version", "description", "supported_entity_types", "config_model")


@dataclass
class DriverCatalogue:
    """Loaded driver classes by key, and the packages that failed to load."""

    drivers: dict[str, type[Driver]] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> type[Driver]:
        """The driver class of a key, or a clear error."""
        if key in self.drivers:
            return self.drivers[key]
        if key in self.broken:
            raise LookupError(f"driver {key!r} failed to load: {self.broken[key]}")
        known = ", ".join(sorted(self.drivers)) or "none"
        raise LookupError(f"no driver {key!r}; installed drivers: {known}")


def extra_entry_points(environ: Mapping[str, str] | None = None) -> list[EntryPoint]:
    """Entry points named by HUB_EXTRA_DRIVERS="key=package.module:Class,...".

    For drivers not installed as packages (local development, tests); they load exactly like
    entry points.
    """
    raw = (os.environ if environ is None else environ).get(EXTRA_ENV, "")
    eps = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, value = item.partition("=")
        eps.append(EntryPoint(name=name.strip(), value=value.strip(), group=GROUP))
    return eps


def check_driver_class(obj: Any) -> type[Driver]:
    """The object as a driver class, or TypeError saying what is missing."""
    if not (isinstance(obj, type) and issubclass(obj, Driver)):
        raise TypeError(f"{obj!r} is not a Driver subclass")
    missing = [attr for attr in _REQUIRED if not hasattr(obj, attr)]
    if missing:
        raise TypeError(f"{obj.__name__} does not declare {', '.join(missing)}")
    if getattr(obj, "__abstractmethods__", None):
        raise TypeError(
            f"{obj.__name__} does not implement {', '.join(sorted(obj.__abstractmethods__))}"
        )
    if not (isinstance(obj.config_model, type) and issubclass(obj.config_model, BaseModel)):
        raise TypeError(f"{obj.__name__}.config_model is not a pydantic model")
    if not isinstance(obj.supported_entity_types, frozenset | set):
        raise TypeError(f"{obj.__name__}.supported_entity_types is not a set")
    return obj


def discover(eps: list[EntryPoint] | None = None) -> DriverCatalogue:
    """Load every driver entry point (and HUB_EXTRA_DRIVERS), recording failures by name.

    A package that fails to import, is not a complete Driver, or claims a key another driver
    already has is recorded in `broken` under its entry point name; the others still load.
    """
    catalogue = DriverCatalogue()
    if eps is None:
        eps = [*entry_points(group=GROUP), *extra_entry_points()]
    for ep in eps:
        try:
            cls = check_driver_class(ep.load())
            other = catalogue.drivers.get(cls.key)
            if other is not None and other is not cls:
                raise TypeError(
                    f"key {cls.key!r} is already taken by {other.__module__}.{other.__qualname__}"
                )
            catalogue.drivers[cls.key] = cls
        except Exception as exc:
            catalogue.broken[ep.name] = f"{type(exc).__name__}: {exc}"
            logger.error("driver failed to load", extra={"driver": ep.name, "error": str(exc)})
    return catalogue


def describe(cls: type[Driver]) -> dict[str, Any]:
    """What `hub drivers list` shows of a driver, JSON-friendly."""
    return {
        "key": cls.key,
        "name": cls.name,
        "version": cls.version,
        "description": cls.description,
        "entity_types": sorted(cls.supported_entity_types),
        "module": f"{cls.__module__}:{cls.__qualname__}",
        "config_schema": cls.config_model.model_json_schema(),
    }
