"""The pure priority resolver and the queue map loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pim_hub.registry.priority import (
    DEFAULT_LEVELS,
    PriorityRules,
    change_priority,
    override_problems,
    resolve_priority,
)
from pim_hub.registry.queue_map import QueueMapError, load_queue_map, parse_queue_map
from pim_hub.services.mutator.processing import fanout_for

RULES = PriorityRules()


def value(attribute: str, new: Any, old: Any = None, locale: str | None = None) -> dict[str, Any]:
    return {
        "field": "values",
        "attribute": attribute,
        "locale": locale,
        "scope": None,
        "old": orjson.dumps(old).decode() if old is not None else None,
        "new": orjson.dumps(new).decode() if new is not None else None,
    }


def scalar(field: str, new: Any) -> dict[str, Any]:
    return {"field": field, "attribute": None, "old": None, "new": orjson.dumps(new).decode()}


PRICE = value("price", [{"amount": "9.90", "currency": "EUR"}])
OTHER_PRICE = value("msrp", [{"amount": "12.00", "currency": "USD"}])
DESCRIPTION = value("description", "<p>Soft</p>", locale="en_US")
COLOR = value("color", "red")
ENABLED = scalar("enabled", False)
CATEGORIES = {"field": "categories", "attribute": None, "added": ["men"], "removed": []}

# (entity type, operation, changes, integration override, expected)
CASES: list[tuple[str, str, list[dict[str, Any]], dict[str, Any] | None, str]] = [
    ("product", "update", [PRICE], None, "immediate"),
    ("product", "update", [DESCRIPTION], None, "normal"),
    ("product", "update", [COLOR], None, "normal"),
    ("product", "update", [ENABLED], None, "immediate"),
    ("product", "update", [CATEGORIES], None, "normal"),
    # A price collection is urgent whatever its attribute is called.
    ("product", "update", [OTHER_PRICE], None, "immediate"),
    # The mutation takes the most urgent of its changes.
    ("product", "update", [DESCRIPTION, COLOR, PRICE], None, "immediate"),
    ("product", "delete", [], None, "immediate"),
    ("product_model", "update", [DESCRIPTION], None, "normal"),
    ("category", "update", [scalar("parent", "master")], None, "low"),
    ("family", "create", [scalar("code", "shoes")], None, "low"),
    # a create lists every field: its price does not make a catalogue load urgent
    ("product", "create", [PRICE, ENABLED], None, "normal"),
    ("product", "create", [PRICE], {"operations": {"create": "immediate"}}, "immediate"),
    ("category", "delete", [], None, "immediate"),
    ("reference_entity", "update", [scalar("code", "x")], None, "normal"),
    # Per-integration overrides: by attribute (more or less urgent) and by entity type.
    ("product", "update", [DESCRIPTION], {"attributes": {"description": "immediate"}}, "immediate"),
    ("product", "update", [PRICE], {"attributes": {"price": "low"}}, "low"),
    ("product", "update", [COLOR], {"entity_types": {"product": "low"}}, "low"),
    (
        "category",
        "update",
        [scalar("parent", "m")],
        {"entity_types": {"category": "immediate"}},
        "immediate",
    ),
    ("product", "update", [ENABLED], {"fields": {"enabled": "low"}}, "low"),
    ("product", "update", [OTHER_PRICE], {"price_collections": None}, "normal"),
    ("product", "delete", [], {"operations": {"delete": "low"}}, "low"),
    # An override of one attribute leaves the others alone.
    (
        "product",
        "update",
        [DESCRIPTION, PRICE],
        {"attributes": {"description": "low"}},
        "immediate",
    ),
]


@pytest.mark.parametrize(("entity_type", "operation", "changes", "override", "expected"), CASES)
def test_resolve_priority_table(
    entity_type: str,
    operation: str,
    changes: list[dict[str, Any]],
    override: dict[str, Any] | None,
    expected: str,
) -> None:
    rules = RULES.merged(override)
    assert resolve_priority(entity_type, operation, changes, rules, DEFAULT_LEVELS) == expected


def test_attribute_rule_beats_field_and_price_collection_rules() -> None:
    rules = RULES.merged({"attributes": {"msrp": "low"}, "fields": {"values": "immediate"}})
    assert change_priority("product", OTHER_PRICE, rules) == "low"
    assert change_priority("product", COLOR, rules) == "immediate"


def test_unknown_priority_names_are_ignored_and_default_applies() -> None:
    rules = PriorityRules(
        entity_types={"product": "urgent"}, attributes={}, fields={}, default="normal"
    )
    assert resolve_priority("product", "update", [COLOR], rules) == "normal"


def test_custom_levels_choose_the_lowest_number() -> None:
    levels = {"now": 1, "later": 2, "whenever": 3}
    rules = PriorityRules(
        entity_types={"product": "whenever"},
        operations={},
        fields={"enabled": "now"},
        attributes={"price": "later"},
        price_collections=None,
        default="whenever",
    )
    assert resolve_priority("product", "update", [COLOR], rules, levels) == "whenever"
    assert resolve_priority("product", "update", [COLOR, PRICE], rules, levels) == "later"
    assert resolve_priority("product", "update", [PRICE, ENABLED], rules, levels) == "now"


@pytest.mark.parametrize(
    ("override", "problems"),
    [
        (None, []),
        ({}, []),
        ({"attributes": {"price": "low"}, "price_collections": None}, []),
        (
            {"attributes": {"price": "urgent"}},
            ["priority_map.attributes.price: unknown priority 'urgent'"],
        ),
        ({"attribute": {"price": "low"}}, ["priority_map.attribute: unknown key"]),
        ({"fields": ["enabled"]}, ["priority_map.fields: must be an object"]),
        ({"default": "soon"}, ["priority_map.default: unknown priority 'soon'"]),
        ("immediate", ["priority_map: must be an object"]),
    ],
)
def test_override_problems_name_the_bad_key(override: Any, problems: list[str]) -> None:
    found = override_problems(override, DEFAULT_LEVELS)
    assert len(found) == len(problems)
    for line, start in zip(found, problems, strict=True):
        assert line.startswith(start)


def test_default_queue_map_matches_the_topic_catalogue() -> None:
    qmap = parse_queue_map(None)
    assert qmap.levels == {"immediate": 0, "normal": 5, "low": 9}
    assert qmap.topic("immediate") == "hub.jobs.immediate"
    assert qmap.topic("low") == "hub.jobs.low"
    assert qmap.rules == PriorityRules()


def test_queue_map_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "queue-map.yaml"
    path.write_text(
        """
queue_map:
  priorities:
    immediate: {level: 0, topic: hub.jobs.immediate}
    normal: {level: 5, topic: hub.jobs.normal}
    low: {level: 9, topic: hub.jobs.low}
  attributes: {price: immediate, ean: low}
  entity_types: {product: low}
"""
    )
    qmap = load_queue_map(path)
    assert qmap.rules.attributes == {"price": "immediate", "ean": "low"}
    assert resolve_priority("product", "update", [COLOR], qmap.rules, qmap.levels) == "low"
    assert resolve_priority("product", "update", [PRICE], qmap.rules, qmap.levels) == "immediate"
    # Tables the file leaves out keep their defaults.
    assert qmap.rules.fields == PriorityRules().fields
    fanout = fanout_for(qmap, serde=None)  # type: ignore[arg-type]
    assert fanout.rules == qmap.rules and fanout.levels == qmap.levels


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"attributes": {"price": "urgent"}}, "attributes.price: unknown priority 'urgent'"),
        (
            {"priorities": {"fast": {"level": 0, "topic": "t"}}, "default": "fast"},
            "unknown priority",
        ),
        (
            {
                "priorities": {
                    "a": {"level": 0, "topic": "same"},
                    "b": {"level": 1, "topic": "same"},
                }
            },
            "share the topic same",
        ),
        ({"priorities": {"immediate": {"level": -1, "topic": "x"}}}, "priorities.immediate.level"),
        ({"levels": {}}, "levels: Extra inputs are not permitted"),
    ],
)
def test_invalid_queue_maps_are_refused_with_the_reason(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(QueueMapError, match="invalid queue map") as info:
        parse_queue_map(doc)
    assert message in str(info.value)


def test_unreadable_queue_map_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QueueMapError, match="cannot read queue map"):
        load_queue_map(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(QueueMapError, match="must be a mapping"):
        load_queue_map(bad)
