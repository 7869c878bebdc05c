"""Tests of the document index and the Magento-shaped validation messages."""

from __future__ import annotations

from sandbox.magento.errors import MSG_REQUIRED, MSG_WRONG_TYPE, render_message
from sandbox.magento.spec import DEFAULT_SPEC_PATH, MagentoSpec


def test_default_spec_path_is_beside_the_repo() -> None:
    assert DEFAULT_SPEC_PATH.parts[-4:] == ("shared", "specs", "magento", "admin-schema-2.4.9.yaml")
    assert DEFAULT_SPEC_PATH.is_file()


def test_literal_segments_win_over_parameters(spec: MagentoSpec) -> None:
    found = spec.match("GET", "/V1/products/attributes")
    assert found is not None
    assert found[0].template == "/V1/products/attributes"
    by_sku = spec.match("GET", "/V1/products/ABC-1")
    assert by_sku is not None
    assert (by_sku[0].template, by_sku[1]) == ("/V1/products/{sku}", {"sku": "ABC-1"})


def test_bulk_paths_map_by_param_segments(spec: MagentoSpec) -> None:
    found = spec.match_bulk("PUT", "/V1/products/bySku")
    assert found is not None
    assert found[0].template == "/V1/products/{sku}"
    assert found[1] == ["sku"]
    assert spec.match_bulk("PUT", "/V1/products/ABC") is None


def test_body_violations_use_magento_messages(spec: MagentoSpec) -> None:
    op = spec.operation("POST", "/V1/products")
    assert spec.validate_body(op, {"product": {"sku": "A", "name": "n"}}) == []
    [missing] = spec.validate_body(op, {})
    assert missing.message == MSG_REQUIRED
    assert missing.parameters == {"fieldName": "product"}
    [wrong] = spec.validate_body(op, {"product": {"sku": "A", "price": "cheap"}})
    assert wrong.message == MSG_WRONG_TYPE
    assert wrong.parameters == {"fieldName": "product.price", "value": "cheap", "type": "float"}
    assert "product.price" in render_message(wrong.message, wrong.parameters)


def test_nested_refs_are_resolved(spec: MagentoSpec) -> None:
    op = spec.operation("POST", "/V1/products")
    body = {"product": {"sku": "A", "custom_attributes": [{"attribute_code": "color"}]}}
    [violation] = spec.validate_body(op, body)
    assert violation.parameters["fieldName"] == "product.custom_attributes.0.value"


def test_render_message_fills_named_and_positional_placeholders() -> None:
    assert render_message(
        "No such entity with %fieldName = %fieldValue", {"fieldName": "id", "fieldValue": "7"}
    ) == ("No such entity with id = 7")
    assert render_message('label "%1" exists', ["Red"]) == 'label "Red" exists'
