"""Normalisation of Akeneo payloads into indexed states."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pim_hub.schemas.entities import ENTITY_TYPES, entity_key, parse_entity
from pim_hub.schemas.errors import InvalidSnapshot, PermanentError
from pim_hub.services.mutator.core.diffing import diff
from pim_hub.services.mutator.core.normalise import (
    canonical_decimal,
    denormalise,
    index_state,
    normalise_value,
    source_of,
)

UUID = "25566245-55c3-42ce-86d9-8610ac459fa8"


def product(values: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"uuid": UUID, "enabled": True, "family": "shoes", "values": values, **fields}


def value(
    data: Any,
    attribute_type: str | None = None,
    locale: str | None = None,
    scope: str | None = None,
) -> list[dict[str, Any]]:
    item: dict[str, Any] = {"locale": locale, "scope": scope, "data": data}
    if attribute_type is not None:
        item["attribute_type"] = attribute_type
    return [item]


# (attribute type, data before, data after, compares equal?)
ATTRIBUTE_TYPE_CASES: list[tuple[str, Any, Any, bool]] = [
    ("pim_catalog_text", "Shoe", "Shoe", True),
    ("pim_catalog_text", "Shoe", "Boot", False),
    ("pim_catalog_text", "1.0", "1.00", False),  # text is never compared as a number
    ("pim_catalog_textarea", "<p>Red</p>", "<p>Red</p>", True),
    ("pim_catalog_textarea", "<p>Red</p>", "<p>Blue</p>", False),
    ("pim_catalog_number", "12.5000", "12.5", True),
    ("pim_catalog_number", "12.5000", 12.5, True),
    ("pim_catalog_number", 3, "3.0000", True),
    ("pim_catalog_number", "-0.0000", "0", True),
    ("pim_catalog_number", "12.5000", "12.5001", False),
    ("pim_catalog_number", 12, 13, False),
    ("pim_catalog_boolean", True, True, True),
    ("pim_catalog_boolean", True, False, False),
    ("pim_catalog_boolean", False, 0, False),  # a boolean is not the number 0
    ("pim_catalog_date", "2024-01-01T00:00:00+00:00", "2024-01-01", True),
    ("pim_catalog_date", "2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00", False),
    ("pim_catalog_simpleselect", "red", "red", True),
    ("pim_catalog_simpleselect", "red", "blue", False),
    ("pim_catalog_multiselect", ["a", "b"], ["b", "a"], True),
    ("pim_catalog_multiselect", ["a", "b"], ["a", "b", "c"], False),
    ("pim_catalog_reference_data_multi_select", ["x", "y"], ["y", "x"], True),
    ("pim_catalog_reference_data_simple_select", "x", "y", False),
    (
        "pim_catalog_price_collection",
        [{"amount": "10.00", "currency": "EUR"}, {"amount": "12", "currency": "USD"}],
        [{"amount": "12.0000", "currency": "USD"}, {"amount": 10, "currency": "EUR"}],
        True,
    ),
    (
        "pim_catalog_price_collection",
        [{"amount": "10.00", "currency": "EUR"}],
        [{"amount": "10.01", "currency": "EUR"}],
        False,
    ),
    (
        "pim_catalog_price_collection",
        [{"amount": "10.00", "currency": "EUR"}],
        [{"amount": "10.00", "currency": "EUR"}, {"amount": "11.00", "currency": "USD"}],
        False,
    ),
    (
        "pim_catalog_metric",
        {"amount": "12.5000", "unit": "KILOGRAM", "symbol": "kg"},
        {"amount": "12.5", "unit": "KILOGRAM"},
        True,
    ),
    (
        "pim_catalog_metric",
        {"amount": "12.5000", "unit": "KILOGRAM"},
        {"amount": "12.5000", "unit": "GRAM"},
        False,
    ),
    ("pim_catalog_image", "a/b/c/1_shoe.jpg", "a/b/c/1_shoe.jpg", True),
    ("pim_catalog_image", "a/b/c/1_shoe.jpg", "d/e/f/2_shoe.jpg", False),
    ("pim_catalog_file", "f/2/e/6/manual.pdf", "f/2/e/6/manual_v2.pdf", False),
    ("akeneo_reference_entity", "brand_a", "brand_a", True),
    ("akeneo_reference_entity", "brand_a", "brand_b", False),
    ("akeneo_reference_entity_collection", ["s1", "s2"], ["s2", "s1"], True),
    (
        "pim_catalog_asset_collection",
        ["main", "back"],
        ["back", "main"],
        False,
    ),  # order = main image
    (
        "pim_catalog_table",
        [{"ingredient": "salt", "quantity": 2}],
        [{"quantity": 2, "ingredient": "salt"}],
        True,
    ),
    (
        "pim_catalog_table",
        [{"ingredient": "salt", "quantity": 2}],
        [{"ingredient": "salt", "quantity": 3}],
        False,
    ),
    ("pim_catalog_identifier", "SKU-1", "SKU-1", True),
    ("pim_catalog_identifier", "SKU-1", "SKU-2", False),
    (
        "pim_catalog_product_link",
        {"type": "product", "uuid": "p1"},
        {"type": "product", "uuid": "p1"},
        True,
    ),
    (
        "pim_catalog_product_link",
        {"type": "product", "uuid": "p1"},
        {"type": "product_model", "code": "m1"},
        False,
    ),
    ("vendor_unknown_type", {"weird": [1, 2]}, {"weird": [1, 2]}, True),
    ("vendor_unknown_type", {"weird": [1, 2]}, {"weird": [2, 1]}, False),
]


@pytest.mark.parametrize(("attribute_type", "before", "after", "equal"), ATTRIBUTE_TYPE_CASES)
def test_attribute_type_comparison(
    attribute_type: str, before: Any, after: Any, equal: bool
) -> None:
    a = index_state("product", product({"attr": value(before, attribute_type)}))
    b = index_state("product", product({"attr": value(after, attribute_type)}))
    changes = diff(a, b)
    assert (changes == []) is equal
    if not equal:
        (change,) = changes
        assert (change.field, change.attribute) == ("values", "attr")
        # The change carries the source text, not the normalised comparison form.
        assert change.old == before
        assert change.new == after


@pytest.mark.parametrize(("attribute_type", "before", "_after", "_equal"), ATTRIBUTE_TYPE_CASES)
def test_source_text_survives_indexing(
    attribute_type: str, before: Any, _after: Any, _equal: bool
) -> None:
    state = index_state("product", product({"attr": value(before, attribute_type)}))
    assert source_of(state, "values|attr||") == before
    out = denormalise(state)
    assert out["values"]["attr"] == [
        {"locale": None, "scope": None, "data": before, "attribute_type": attribute_type}
    ]


def test_untyped_values_are_compared_by_shape() -> None:
    # Without attribute_type, metrics and prices are recognised by their shape; bare strings
    # stay exact text and JSON numbers compare as decimals.
    a = index_state(
        "product",
        product(
            {
                "w": value({"amount": "1.5000", "unit": "GRAM"}),
                "p": value([{"amount": "3.10", "currency": "EUR"}]),
                "n": value(2),
                "t": value("2.0"),
            }
        ),
    )
    b = index_state(
        "product",
        product(
            {
                "w": value({"amount": "1.5", "unit": "GRAM", "symbol": "g"}),
                "p": value([{"amount": "3.1", "currency": "EUR"}]),
                "n": value(2.0),
                "t": value("2.00"),
            }
        ),
    )
    assert [(c.attribute, c.old, c.new) for c in diff(a, b)] == [("t", "2.0", "2.00")]


def test_attribute_types_argument_types_bare_values() -> None:
    from pim_hub.services.mutator.core.normalise import index_state as index_with_types

    types = {"n": "pim_catalog_number", "m": "pim_catalog_multiselect"}
    a = index_with_types(
        "product", product({"n": value("2.0000"), "m": value(["a", "b"])}), attribute_types=types
    )
    b = index_with_types(
        "product", product({"n": value("2"), "m": value(["b", "a"])}), attribute_types=types
    )
    assert a["c"] == b["c"]
    assert a["a"] == types


@pytest.mark.parametrize("empty", [None, "", [], {}])
def test_empty_data_means_no_value(empty: Any) -> None:
    state = index_state("product", product({"name": value(empty, locale="en_US")}))
    assert not any(slot.startswith("values|") for slot in state["c"])


def test_values_keyed_by_attribute_locale_scope() -> None:
    state = index_state(
        "product",
        product(
            {
                "description": [
                    {"locale": "en_US", "scope": "ecommerce", "data": "Nice"},
                    {"locale": "fr_FR", "scope": "print", "data": "Joli"},
                ],
                "sku": value("S1"),
            }
        ),
    )
    assert {s for s in state["c"] if s.startswith("values|")} == {
        "values|description|en_US|ecommerce",
        "values|description|fr_FR|print",
        "values|sku||",
    }


def test_code_lists_are_sets_and_labels_per_locale() -> None:
    a = index_state(
        "family",
        {
            "code": "shoes",
            "attributes": ["sku", "name", "sku"],
            "labels": {"en_US": "Shoes", "fr_FR": "Chaussures"},
        },
    )
    b = index_state(
        "family",
        {
            "code": "shoes",
            "attributes": ["name", "sku"],
            "labels": {"fr_FR": "Chaussures", "en_US": "Shoes"},
        },
    )
    assert a["c"] == b["c"]
    assert a["c"]["labels|fr_FR"] == '"Chaussures"'
    assert orjson.loads(a["c"]["attributes"]) == ["name", "sku"]


def test_state_is_plain_json() -> None:
    state = index_state(
        "product",
        product(
            {
                "price": value(
                    [{"amount": "10.00", "currency": "EUR"}], "pim_catalog_price_collection"
                ),
                "weight": value({"amount": "1.2000", "unit": "KILOGRAM"}, "pim_catalog_metric"),
            },
            categories=["b", "a"],
            associations={"X_SELL": {"products": ["p2"]}},
        ),
    )
    assert orjson.loads(orjson.dumps(state)) == state


def test_ignores_derived_fields() -> None:
    a = index_state(
        "product",
        product(
            {},
            updated="2024-01-01T00:00:00+00:00",
            created="2023-01-01T00:00:00+00:00",
            metadata={"workflow_status": "working_copy"},
            quality_scores=[{"scope": "e", "data": "A"}],
        ),
    )
    b = index_state(
        "product",
        product({}, updated="2024-02-01T00:00:00+00:00", metadata={"workflow_status": "read_only"}),
    )
    assert a["c"] == b["c"]
    assert a["v"] == "2024-01-01T00:00:00+00:00"


def test_unknown_top_level_fields_are_kept_as_opaque_json() -> None:
    a = index_state("product", product({}, vendor_extension={"b": 1, "a": [1, 2]}))
    b = index_state("product", product({}, vendor_extension={"a": [1, 2], "b": 1}))
    c = index_state("product", product({}, vendor_extension={"a": [2, 1], "b": 1}))
    assert diff(a, b) == []
    assert [ch.field for ch in diff(a, c)] == ["vendor_extension"]
    assert denormalise(a)["vendor_extension"] == {"b": 1, "a": [1, 2]}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.5000", "12.5"),
        ("12", "12"),
        (12, "12"),
        (12.5, "12.5"),
        ("-0.000", "0"),
        ("1E+2", "100"),
        ("0.10", "0.1"),
        (0.1, "0.1"),
        ("abc", None),
        ("NaN", None),
        (True, None),
        (None, None),
    ],
)
def test_canonical_decimal(raw: Any, expected: str | None) -> None:
    assert canonical_decimal(raw) == expected


def test_canonical_decimal_of_huge_exponent_stays_short() -> None:
    result = canonical_decimal("1E+999999")
    assert result is not None and len(result) < 20


def test_normalise_value_price_with_bad_item_is_opaque() -> None:
    data = [{"amount": "1", "currency": "EUR"}, "oops"]
    assert normalise_value(data, "pim_catalog_price_collection") == data


@pytest.mark.parametrize(
    ("entity_type", "payload", "key"),
    [
        ("product", {"uuid": UUID, "identifier": "S1"}, f"product:{UUID}"),
        ("product", {"identifier": "S1"}, "product:S1"),
        ("product_model", {"code": "tshirt", "family_variant": "fv"}, "product_model:tshirt"),
        ("category", {"code": "master"}, "category:master"),
        ("family", {"code": "shoes"}, "family:shoes"),
        ("family_variant", {"code": "shoes_by_size"}, "family_variant:shoes_by_size"),
        ("attribute", {"code": "color", "type": "pim_catalog_simpleselect"}, "attribute:color"),
        ("attribute_option", {"attribute": "color", "code": "red"}, "attribute_option:color.red"),
        ("channel", {"code": "ecommerce"}, "channel:ecommerce"),
        ("locale", {"code": "en_US"}, "locale:en_US"),
    ],
)
def test_entity_key(entity_type: str, payload: dict[str, Any], key: str) -> None:
    assert entity_key(entity_type, payload) == key
    assert index_state(entity_type, payload)["t"] == entity_type


def test_entity_types_cover_issue() -> None:
    assert {
        "product",
        "product_model",
        "category",
        "family",
        "family_variant",
        "attribute",
        "attribute_option",
        "channel",
        "locale",
    } == ENTITY_TYPES


@pytest.mark.parametrize(
    ("entity_type", "payload", "reason"),
    [
        ("product", {"enabled": True}, "missing both 'uuid' and 'identifier'"),
        ("product", {"uuid": 42}, "'uuid' must be a string"),
        ("family", {"labels": {}}, "missing 'code'"),
        ("family", {"code": ""}, "not a valid code"),
        ("attribute_option", {"code": "red"}, "missing 'attribute'"),
        ("widget", {"code": "x"}, "unknown entity type 'widget'"),
        ("channel", ["code"], "payload must be a JSON object"),
    ],
)
def test_entity_key_rejects_bad_identity(entity_type: str, payload: Any, reason: str) -> None:
    with pytest.raises(InvalidSnapshot) as info:
        entity_key(entity_type, payload)
    assert reason in str(info.value)
    assert isinstance(info.value, PermanentError)
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (product({}, enabled="yes"), "'enabled' must be bool"),
        (product({}, categories="shoes"), "'categories' must be a list of codes"),
        (product({}, categories=["a", 1]), "'categories' must be a list of codes"),
        (product([]), "'values' must be an object"),  # type: ignore[arg-type]
        (product({"name": {"data": "x"}}), "'values.name' must be a list"),
        (product({"name": ["x"]}), "'values.name' items must be objects"),
        # A non-object after the item declaring the type (used to escape as AttributeError).
        (
            product({"name": [*value("x", "pim_catalog_text", "en_US"), 5]}),
            "'values.name' items must be objects",
        ),
        (product({"name": [*value("x", "pim_catalog_text"), "y"]}), "items must be objects"),
        (product({"name": [{"data": "x", "locale": 1}]}), "locale/scope must be strings"),
        (product({}, associations={"X": ["p1"]}), "'associations.X' must be an object"),
        (
            product({}, quantified_associations={"PACK": {"products": [{"uuid": "p"}]}}),
            "int quantity",
        ),
        (product({}, family=3), "'family' must be str"),
    ],
)
def test_index_state_rejects_wrong_types(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidSnapshot, match="invalid product snapshot") as info:
        index_state("product", payload)
    assert reason in info.value.reason


def test_parse_entity_validates_with_canonical_model() -> None:
    entity = parse_entity(
        "attribute_option", {"code": "red", "attribute": "color", "labels": {"en_US": "Red"}}
    )
    assert entity.model_dump()["labels"] == {"en_US": "Red"}
    with pytest.raises(InvalidSnapshot, match="sort_order"):
        parse_entity(
            "attribute_option", {"code": "red", "attribute": "color", "sort_order": "first"}
        )


def test_category_enriched_values_keep_attribute_identity() -> None:
    payload: dict[str, Any] = {
        "code": "shoes",
        "parent": "master",
        "labels": {"en_US": "Shoes"},
        "values": {
            "desc|96b8|ecommerce|en_US": {
                "data": "All shoes",
                "type": "text",
                "channel": "ecommerce",
                "locale": "en_US",
                "attribute_code": "desc|96b8",
            }
        },
    }
    state = index_state("category", payload)
    assert "values|desc|96b8|en_US|ecommerce" in state["c"]
    changed = {
        **payload,
        "values": {
            "desc|96b8|ecommerce|en_US": {
                **payload["values"]["desc|96b8|ecommerce|en_US"],
                "data": "Every shoe",
            }
        },
    }
    (change,) = diff(state, index_state("category", changed))
    assert (change.attribute, change.locale, change.scope, change.new) == (
        "desc|96b8",
        "en_US",
        "ecommerce",
        "Every shoe",
    )
    assert denormalise(state)["values"] == payload["values"]
