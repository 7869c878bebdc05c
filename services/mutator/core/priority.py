"""Priority resolution: which jobs topic a mutation goes to (lower number = higher priority)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

#: name -> number; lower is more urgent.
DEFAULT_LEVELS: dict[str, int] = {"immediate": 0, "normal": 5, "low": 9}


@dataclass(frozen=True)
class PriorityRules:
    """Defaults by entity type, operation, field and attribute; an integration may override any."""

    entity_types: Mapping[str, str] = field(
        default_factory=lambda: {
            "product": "normal",
            "product_model": "normal",
            "category": "low",
            "family": "low",
            "family_variant": "low",
            "attribute": "low",
            "attribute_option": "low",
            "channel": "low",
            "locale": "low",
        }
    )
    operations: Mapping[str, str] = field(default_factory=lambda: {"delete": "immediate"})
    fields: Mapping[str, str] = field(default_factory=lambda: {"enabled": "immediate"})
    attributes: Mapping[str, str] = field(
        default_factory=lambda: {
            "price": "immediate",
            "stock": "immediate",
            "quantity": "immediate",
            "description": "normal",
        }
    )
    # Any change whose value is a price collection ([{amount, currency}]) is urgent,
    # whatever its attribute is called.
    price_collections: str | None = "immediate"

    def merged(self, override: Mapping[str, Any] | None) -> PriorityRules:
        """These rules with an integration's priority_map laid over them."""
        if not override:
            return self
        return PriorityRules(
            entity_types={**self.entity_types, **override.get("entity_types", {})},
            operations={**self.operations, **override.get("operations", {})},
            fields={**self.fields, **override.get("fields", {})},
            attributes={**self.attributes, **override.get("attributes", {})},
            price_collections=override.get("price_collections", self.price_collections),
        )


def _is_price_collection(text: str | None) -> bool:
    if not text or not text.startswith("["):
        return False
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and "currency" in v and "amount" in v for v in value)
    )


def resolve_priority(
    entity_type: str,
    operation: str,
    changes: Sequence[Mapping[str, Any]],
    rules: PriorityRules,
    levels: Mapping[str, int] = DEFAULT_LEVELS,
) -> str:
    """The most urgent priority among the entity type, the operation and every change.

    Args:
        entity_type: the mutation's entity type.
        operation: create, update or delete.
        changes: change records (field, attribute, old, new, ...).
        rules: defaults merged with the integration's overrides.
        levels: priority name -> number.

    Returns:
        The name of the resolved priority.
    """
    candidates = [rules.entity_types.get(entity_type, "normal")]
    if operation in rules.operations:
        candidates.append(rules.operations[operation])
    for change in changes:
        fld = str(change.get("field", ""))
        if fld in rules.fields:
            candidates.append(rules.fields[fld])
        attribute = change.get("attribute")
        if attribute and attribute in rules.attributes:
            candidates.append(rules.attributes[attribute])
        elif (
            rules.price_collections
            and fld == "values"
            and (_is_price_collection(change.get("new")) or _is_price_collection(change.get("old")))
        ):
            candidates.append(rules.price_collections)
    known = [c for c in candidates if c in levels]
    if not known:
        return "normal"
    return min(known, key=lambda name: levels[name])
