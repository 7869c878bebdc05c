"""Table tests of the pure product builder."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from pim_hub.drivers.magento2 import Magento2Config
from pim_hub.drivers.magento2 import builder as b
from pim_hub.drivers.magento2.config import AttributeRule
from pim_hub.drivers.magento2.errors import MappingError
from pim_hub.schemas.events import Change
from tests.spec_validation import SwaggerDocument
from tests.unit.magento2.helpers import config_dict, product

CONFIG = Magento2Config.model_validate(config_dict())
OPTIONS = {
    ("color", "red"): "11",
    ("material", "cotton"): "20",
    ("material", "wool"): "21",
    ("size", "m"): "30",
}


def rule(magento: str, **kw: Any) -> AttributeRule:
    return AttributeRule(akeneo=kw.pop("akeneo", magento), magento=magento, **kw)


@pytest.mark.parametrize(
    ("magento", "type_", "data", "expected"),
    [
        ("name", b.TEXT, "Shirt", "Shirt"),
        ("description", b.TEXTAREA, "<p>x</p>", "<p>x</p>"),
        ("rating", b.NUMBER, "4.5000", "4.5"),
        ("rating", b.NUMBER, 12, "12"),
        ("is_new", b.BOOLEAN, True, "1"),
        ("is_new", b.BOOLEAN, False, "0"),
        ("release_date", b.DATE, "2024-03-01T00:00:00+00:00", "2024-03-01"),
        ("color", b.SIMPLE, "red", "11"),
        ("material", b.MULTI, ["cotton", "wool"], "20,21"),
        ("price", b.PRICE, [{"amount": "19.90", "currency": "EUR"}], 19.9),
        ("price", b.PRICE, [{"amount": "19.90", "currency": "USD"}], None),
        ("msrp_text", b.PRICE, [{"amount": "5", "currency": "EUR"}], "5"),
        ("weight", b.METRIC, {"amount": "1500", "unit": "GRAM"}, 1.5),
        ("name", b.TEXT, "", None),
        ("material", b.MULTI, [], None),
    ],
)
def test_transform_per_type(magento: str, type_: str, data: Any, expected: Any) -> None:
    assert b.transform(rule(magento), type_, data, CONFIG, "EUR", OPTIONS) == expected


def test_metric_uses_rule_unit_and_magento_weight_unit() -> None:
    lbs = Magento2Config.model_validate(config_dict(weight_unit="lbs"))
    value = b.transform(
        rule("weight"), b.METRIC, {"amount": "1", "unit": "KILOGRAM"}, lbs, None, {}
    )
    assert value == 2.2046
    cm = b.transform(
        rule("len", unit="CENTIMETER"), b.METRIC, {"amount": "2", "unit": "INCH"}, CONFIG, None, {}
    )
    assert cm == "5.08"
    assert b.convert_metric(Decimal(1), "TON", "KILOGRAM") == 1000


@pytest.mark.parametrize(
    ("type_", "data", "message"),
    [
        (b.SIMPLE, "unknown", "no Magento option id"),
        (b.NUMBER, "abc", "not a number"),
        (b.DATE, "yesterday", "not a date"),
        (b.METRIC, {"amount": "1", "unit": "LITER"}, "cannot convert"),
    ],
)
def test_unmappable_values_raise_mapping_errors(type_: str, data: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        b.transform(
            rule("weight" if type_ == b.METRIC else "x"), type_, data, CONFIG, "EUR", OPTIONS
        )


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([{"data": True}], b.BOOLEAN),
        ([{"data": 3}], b.NUMBER),
        ([{"data": {"amount": "1", "unit": "GRAM"}}], b.METRIC),
        ([{"data": [{"amount": "1", "currency": "EUR"}]}], b.PRICE),
        ([{"data": ["a", "b"]}], b.MULTI),
        ([{"data": "2024-01-02T00:00:00+00:00"}], b.DATE),
        ([{"data": "1/2/3/4/" + "a" * 40 + "_x.png"}], b.IMAGE),
        ([{"data": "hello"}], b.TEXT),
        ([], None),
    ],
)
def test_type_inference(items: list[dict[str, Any]], expected: str | None) -> None:
    assert b.infer_type(items) == expected


def test_type_precedence_config_rule_value_learned_shape() -> None:
    items = [{"data": "red", "attribute_type": b.SIMPLE}]
    declared = Magento2Config.model_validate(config_dict(attribute_types={"c": b.TEXT}))
    assert b.resolve_type("c", items, declared, None, {}) == b.TEXT
    assert b.resolve_type("c", items, CONFIG, rule("c", type=b.TEXTAREA), {}) == b.TEXTAREA
    assert b.resolve_type("c", items, CONFIG, None, {"c": b.TEXT}) == b.SIMPLE
    assert b.resolve_type("c", [{"data": "red"}], CONFIG, None, {"c": b.SIMPLE}) == b.SIMPLE
    assert b.resolve_type("c", [{"data": "red"}], CONFIG, None, {}) == b.TEXT


def resolved() -> b.Resolved:
    return b.Resolved(option_ids=dict(OPTIONS), category_ids={"men": 5})


def test_full_build_scopes_and_structure(magento_doc: SwaggerDocument) -> None:
    entity = product("SKU-1", categories=["men"], enabled=False)
    payload = b.build_product(entity, CONFIG, {}, resolved())
    admin = payload.admin
    assert admin["sku"] == "SKU-1" and admin["status"] == 2 and admin["attribute_set_id"] == 9
    assert admin["type_id"] == "simple" and admin["visibility"] == 4
    assert admin["extension_attributes"] == {
        "website_ids": [1],
        "category_links": [{"position": 0, "category_id": "5"}],
    }
    custom = {a["attribute_code"]: a["value"] for a in admin["custom_attributes"]}
    assert all(isinstance(v, str) for v in custom.values())
    assert "price" not in custom and admin["price"] == 19.9
    assert payload.stores["de"] == {"sku": "SKU-1", "name": "Hemd SKU-1"}
    # Global attributes (price, weight) never go to a store view.
    assert all("price" not in s and "weight" not in s for s in payload.stores.values())
    magento_doc.validate_request("post", "/V1/products", {"product": admin})
    for body in payload.stores.values():
        magento_doc.validate_request("put", "/V1/products/{sku}", {"product": body})


def test_variant_is_not_visible_individually() -> None:
    payload = b.build_product(product("SKU-V", parent="model_1"), CONFIG, {}, resolved())
    assert payload.admin["visibility"] == 1


@pytest.mark.parametrize(
    ("change", "admin", "stores"),
    [
        (Change(field="enabled"), {"status"}, {}),
        (Change(field="family"), {"attribute_set_id"}, {}),
        (Change(field="categories"), {"category_links"}, {}),
        (Change(field="values", attribute="name", locale="fr_FR"), set(), {"fr": {"name"}}),
        # `default` shows en_US on the default channel, like the admin values: it inherits.
        (Change(field="values", attribute="name", locale="en_US"), {"name"}, {}),
        (
            Change(field="values", attribute="description", locale="en_US", scope="mobile"),
            set(),
            {},
        ),
        (Change(field="values", attribute="price"), {"price"}, {}),
        (Change(field="values", attribute="color"), {"color"}, {}),
        (Change(field="values", attribute="unmapped"), set(), {}),
    ],
)
def test_affected_fields(change: Change, admin: set[str], stores: dict[str, set[str]]) -> None:
    got_admin, got_stores, media = b.affected_fields([change], product("S"), CONFIG)
    assert (got_admin, got_stores, media) == (admin, stores, False)


def test_update_build_sends_only_touched_fields() -> None:
    changes = [Change(field="values", attribute="name", locale="fr_FR"), Change(field="enabled")]
    payload = b.build_product(product("S"), CONFIG, {}, resolved(), changes=changes)
    assert payload.admin == {"sku": "S", "status": 1}
    assert payload.stores == {"fr": {"sku": "S", "name": "Chemise S"}}
    nothing = b.build_product(
        product("S"), CONFIG, {}, resolved(), changes=[Change(field="values", attribute="unmapped")]
    )
    assert b.is_empty_update(nothing)


def test_references_collect_options_categories_and_images() -> None:
    rules = [*CONFIG.attributes, rule("image", type=b.IMAGE)]
    config = CONFIG.model_copy(update={"attributes": rules})
    entity = product("S", categories=["men", "sale"])
    entity["values"]["image"] = [{"locale": None, "scope": None, "data": "a/b/c/d/f.png"}]
    refs = b.references(entity, config, {})
    assert refs.categories == {"men", "sale"}
    assert {(r.magento, r.code) for r in refs.options} == {
        ("color", "red"),
        ("material", "cotton"),
        ("material", "wool"),
    }
    assert [(i.attribute, i.file_code, i.roles) for i in refs.images] == [
        ("image", "a/b/c/d/f.png", ("image", "small_image"))
    ]


def test_identifier_and_missing_identifier() -> None:
    assert b.identifier_of({"identifier": "A"}, CONFIG) == "A"
    assert b.identifier_of(product("B"), CONFIG) == "B"
    with pytest.raises(MappingError):
        b.identifier_of({"values": {}}, CONFIG)


def test_category_and_option_payloads_match_the_document(magento_doc: SwaggerDocument) -> None:
    cat = {"code": "men", "labels": {"en_US": "Men", "fr_FR": "Hommes"}}
    body = b.build_category(cat, CONFIG, 3)
    assert body["name"] == "Men" and body["parent_id"] == 3
    magento_doc.validate_request("post", "/V1/categories", {"category": body})
    assert b.category_store_names(cat, CONFIG) == {"fr": "Hommes"}  # `default` inherits
    option = b.build_option("red", {"fr_FR": "Rouge"}, CONFIG, {"fr": 2, "default": 1})
    assert option == {
        "label": "red",
        "value": "",
        "sort_order": 0,
        "is_default": False,
        "store_labels": [{"store_id": 2, "label": "Rouge"}],
    }
    magento_doc.validate_request(
        "post", "/V1/products/attributes/color/options", {"option": option}
    )
    conf = b.configurable_option(144, "size", 0, ["12", "3", "12"])
    assert conf["values"] == [{"value_index": 3}, {"value_index": 12}]
    magento_doc.validate_request("post", "/V1/configurable-products/x/options", {"option": conf})


def test_slugify_matches_magento() -> None:
    assert b.slugify("Classic Shirt P0000001") == "classic-shirt-p0000001"
    assert b.slugify("  Été -- 2024!") == "t-2024"
