"""Tests of the document index and the Magento-shaped validation messages."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft4Validator

from sandbox.magento.errors import MSG_REQUIRED, MSG_WRONG_TYPE, render_message
from sandbox.magento.spec import DEFAULT_SPEC_PATH, MagentoSpec, violations


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


def _wrong(schema: dict[str, Any], definitions: dict[str, Any], depth: int) -> Any:
    """A value breaking `schema` at every level it can reach (objects hold wrong members)."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _wrong(definitions[name], definitions, depth) if depth else {}
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _wrong(v, definitions, depth - 1) for k, v in props.items()} if depth else 7
    if kind == "array":
        return [_wrong(schema.get("items") or {}, definitions, depth - 1), None] if depth else 7
    return {"not": "a scalar"} if kind in ("string", "integer", "number", "boolean") else None


def test_validation_reports_exactly_what_the_plain_validator_does(spec: MagentoSpec) -> None:
    # The validators resolve refs ahead of time: no error may appear, vanish or change.
    checked = 0
    for template, item in spec.document["paths"].items():
        for method, raw in item.items():
            if not isinstance(raw, dict):
                continue
            op = spec.operation(method.upper(), template)
            if op.body_schema is None:
                continue
            plain = Draft4Validator({**op.body_schema, "definitions": spec.definitions})
            bodies = [
                {},
                [],
                "x",
                *(_wrong(op.body_schema, spec.definitions, d) for d in (1, 3, 6)),
            ]
            for body in bodies:
                expected = violations(plain.iter_errors(body))
                assert spec.validate_body(op, body) == expected, (method, template, body)
                checked += 1
    assert checked > 500
