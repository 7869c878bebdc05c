"""Validation of an integration against its driver, its rate limits and the priority levels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from pim_hub.drivers.base import Driver
from pim_hub.drivers.discovery import DriverCatalogue
from pim_hub.registry.limits import CONFIG_KEY, InvalidRateLimit, RateLimit
from pim_hub.registry.model import ID_RE, Integration, IntegrationError
from pim_hub.registry.priority import DEFAULT_LEVELS, override_problems


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


def with_driver_types(catalogue: DriverCatalogue, integ: Integration) -> Integration:
    """The integration with the entity types its driver declares recorded (fan-out reads them)."""
    from dataclasses import replace

    cls = catalogue.drivers.get(integ.driver)
    if cls is None:
        return integ
    return replace(integ, driver_entity_types=tuple(sorted(cls.supported_entity_types)))
