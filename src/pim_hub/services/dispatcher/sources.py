"""Sources besides Akeneo (HUB_SOURCES) as the version guard sees them."""

from __future__ import annotations

from collections.abc import Callable

from pim_hub.schemas.ownership import Ownership


def foreign_fields(ownership: Ownership) -> Callable[[str], bool] | None:
    """The guard's predicate: is the field of a guard key owned by another source than Akeneo?

    Such a field's versions are its source's clock: the guard compares them with each other
    only (pim_hub.services.dispatcher.core.guard.decide, `foreign`). None without sources.
    """
    if not ownership.active:
        return None

    def foreign(key: str) -> bool:
        field, attribute, *_ = key.split("|")
        name = f"values.{attribute}" if field == "values" else field
        return ownership.owner(name) != ownership.default

    return foreign
