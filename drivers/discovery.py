"""Finds drivers through the `pim_hub.drivers` entry points; a broken one never hides the others."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from drivers.base import Driver

logger = logging.getLogger(__name__)

GROUP = "pim_hub.drivers"


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


def _extra_entry_points() -> list[EntryPoint]:
    # HUB_EXTRA_DRIVERS="key=package.module:Class,...": drivers not installed as packages
    # (local development, tests); they load exactly like entry points.
    raw = os.environ.get("HUB_EXTRA_DRIVERS", "")
    eps = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, value = item.partition("=")
        eps.append(EntryPoint(name=name.strip(), value=value.strip(), group=GROUP))
    return eps


def discover(eps: list[EntryPoint] | None = None) -> DriverCatalogue:
    """Load every driver entry point (and HUB_EXTRA_DRIVERS), recording failures by name."""
    catalogue = DriverCatalogue()
    if eps is None:
        eps = [*entry_points(group=GROUP), *_extra_entry_points()]
    for ep in eps:
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Driver)):
                raise TypeError(f"{ep.value} is not a Driver subclass")
            catalogue.drivers[cls.key] = cls
        except Exception as exc:
            catalogue.broken[ep.name] = f"{type(exc).__name__}: {exc}"
            logger.error("driver failed to load", extra={"driver": ep.name, "error": str(exc)})
    return catalogue
