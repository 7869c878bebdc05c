"""Tests of the document index and the Magento-shaped validation messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft4Validator

from pim_hub.sandbox.magento.errors import MSG_REQUIRED, MSG_WRONG_TYPE, render_message
from pim_hub.sandbox.magento.spec import DEFAULT_SPEC_PATH, MagentoSpec, Operation, violations


def test_default_spec_path_is_the_copy_shipped_with_the_sandbox() -> None:
    assert DEFAULT_SPEC_PATH.parts[-5:] == (
        "pim_hub",
        "sandbox",
        "specs",
        "magento",
        "admin-schema-2.4.9.yaml",
    )
    assert DEFAULT_SPEC_PATH.is_file()
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


def _body_operations(
    spec: MagentoSpec, prefixes: tuple[str, ...] = ("",)
) -> Iterator[tuple[Operation, dict[str, Any], Draft4Validator]]:
    """Every operation with a body schema (under these path prefixes), with a plain validator."""
    for template, item in spec.document["paths"].items():
        if not template.startswith(prefixes):
            continue
        for method, raw in item.items():
            if not isinstance(raw, dict):
                continue
            op = spec.operation(method.upper(), template)
            if op.body_schema is not None:
                plain = Draft4Validator({**op.body_schema, "definitions": spec.definitions})
                yield op, op.body_schema, plain


def test_validation_reports_exactly_what_the_plain_validator_does(
    spec: MagentoSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The validators resolve refs ahead of time: no error may appear, vanish or change. The
    # compiled check runs first in use; here every body goes to jsonschema (compiling every
    # operation's check would take minutes; the test below compares the two).
    monkeypatch.setattr(spec, "valid", lambda schema, body: False)
    checked = 0
    for op, schema, plain in _body_operations(spec):
        bodies = [{}, [], "x", *(_wrong(schema, spec.definitions, d) for d in (1, 3, 6))]
        for body in bodies:
            expected = violations(plain.iter_errors(body))
            assert spec.validate_body(op, body) == expected, (op.method, op.template, body)
            checked += 1
    assert checked > 500


def _right(schema: dict[str, Any], definitions: dict[str, Any], depth: int) -> Any:
    """A value meeting `schema`: every property down to `depth`, then the required ones."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _right(definitions[name], definitions, depth)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        keep = props if depth > 0 else {k: props[k] for k in schema.get("required", [])}
        return {k: _right(v, definitions, depth - 1) for k, v in keep.items()}
    if kind == "array":
        return [_right(schema.get("items") or {}, definitions, depth - 1)] if depth > 0 else []
    return {"string": "s", "integer": 3, "number": 1.5, "boolean": True}.get(str(kind), "s")


#: what the Magento driver sends: products, their links and options, and categories
DRIVER_PATHS = ("/V1/products", "/V1/configurable-products", "/V1/categories")


def test_the_compiled_check_agrees_with_jsonschema_on_the_drivers_operations(
    spec: MagentoSpec,
) -> None:
    verdicts = {True: 0, False: 0}
    for op, schema, plain in _body_operations(spec, DRIVER_PATHS):
        bodies = [
            {},
            "x",
            *(_wrong(schema, spec.definitions, d) for d in (1, 3)),
            *(_right(schema, spec.definitions, d) for d in (0, 2, 5)),
        ]
        for body in bodies:
            valid = not list(plain.iter_errors(body))
            assert spec.valid(schema, body) is valid, (op.method, op.template, body)
            verdicts[valid] += 1
    # Both verdicts are exercised, on many operations.
    assert verdicts[True] > 40 and verdicts[False] > 40, verdicts
