"""Priority resolution: which jobs topic a mutation goes to (lower number = higher priority)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pim_hub.schemas import topics

#: name -> number; lower is more urgent (the levels of the topic catalogue).
DEFAULT_LEVELS: dict[str, int] = {name: level for name, (level, _) in topics.PRIORITIES.items()}

#: The rule tables an integration's priority_map may override.
RULE_TABLES: tuple[str, ...] = ("entity_types", "operations", "fields", "attributes")


@dataclass(frozen=True)
class PriorityRules:
    """Defaults by entity type, operation, field and attribute; an integration may override any.

    A change is ranked by its most specific rule: attribute, then price collection, then field,
    then the entity type's default. A mutation takes the most urgent of its changes (and of its
    operation's rule, e.g. deletes are immediate).
    """

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
            "short_description": "normal",
            "name": "normal",
        }
    )
    # Any change whose value is a price collection ([{amount, currency}]) is urgent,
    # whatever its attribute is called.
    price_collections: str | None = "immediate"
    #: for entity types no rule names
    default: str = "normal"

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
            default=override.get("default", self.default),
        )

    def names(self) -> set[str]:
        """Every priority name these rules mention."""
        named = {self.default}
        if self.price_collections:
            named.add(self.price_collections)
        for table in RULE_TABLES:
            named.update(getattr(self, table).values())
        return named


def override_problems(override: Any, levels: Mapping[str, int]) -> list[str]:
    """Why an integration's priority_map is unusable (empty when it is fine).

    Args:
        override: the priority_map as stored (a JSON object).
        levels: the known priority names.

    Returns:
        One line per problem, naming the bad key.
    """
    if override is None:
        return []
    if not isinstance(override, Mapping):
        return ["priority_map: must be an object"]
    known = ", ".join(sorted(levels, key=lambda n: levels[n]))
    problems = []
    for key, value in override.items():
        if key in RULE_TABLES:
            if not isinstance(value, Mapping):
                problems.append(f"priority_map.{key}: must be an object of name -> priority")
                continue
            for name, prio in value.items():
                if prio not in levels:
                    problems.append(
                        f"priority_map.{key}.{name}: unknown priority {prio!r} (known: {known})"
                    )
        elif key in ("price_collections", "default"):
            if not (value is None and key == "price_collections") and value not in levels:
                problems.append(f"priority_map.{key}: unknown priority {value!r} (known: {known})")
        else:
            problems.append(
                f"priority_map.{key}: unknown key (allowed: "
                f"{', '.join((*RULE_TABLES, 'price_collections', 'default'))})"
            )
    return problems


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


def change_priority(entity_type: str, change: Mapping[str, Any], rules: PriorityRules) -> str:
    """The priority of one change: its most specific matching rule.

    Args:
        entity_type: the mutation's entity type (its default applies when no rule matches).
        change: one change record (field, attribute, old, new, ...).
        rules: defaults merged with the integration's overrides.

    Returns:
        A priority name.
    """
    attribute = change.get("attribute")
    if attribute and attribute in rules.attributes:
        return rules.attributes[attribute]
    fld = str(change.get("field", ""))
    if (
        rules.price_collections
        and fld == "values"
        and (_is_price_collection(change.get("new")) or _is_price_collection(change.get("old")))
    ):
        return rules.price_collections
    if fld in rules.fields:
        return rules.fields[fld]
    return rules.entity_types.get(entity_type, rules.default)


def resolve_priority(
    entity_type: str,
    operation: str,
    changes: Sequence[Mapping[str, Any]],
    rules: PriorityRules,
    levels: Mapping[str, int] = DEFAULT_LEVELS,
) -> str:
    """The most urgent priority among the operation's rule and every change's priority.

    Args:
        entity_type: the mutation's entity type.
        operation: create, update or delete.
        changes: change records (field, attribute, old, new, ...).
        rules: defaults merged with the integration's overrides.
        levels: priority name -> number (lower is more urgent).

    Returns:
        The name of the resolved priority; names unknown to levels are ignored, and when
        nothing known remains the rules' default (or the least urgent level) is used.
    """
    if operation == "create":
        # A create lists every field as a change: field rules (a price is urgent) would send a
        # whole catalogue load to the most urgent lane. New entities take their type's default
        # unless the queue map has an `operations: {create: ...}` rule.
        candidates = [rules.entity_types.get(entity_type, rules.default)]
    else:
        candidates = [change_priority(entity_type, c, rules) for c in changes]
    if operation in rules.operations:
        candidates.append(rules.operations[operation])
    if not candidates:  # e.g. a delete without an operation rule
        candidates.append(rules.entity_types.get(entity_type, rules.default))
    known = [c for c in candidates if c in levels]
    if not known:
        if rules.default in levels:
            return rules.default
        return max(levels, key=lambda name: levels[name])
    return min(known, key=lambda name: levels[name])
