"""Magento's official Swagger 2.0 document: loading, route matching and draft-4 validation."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from pim_hub.sandbox.magento.errors import (
    MSG_INVALID_VALUE,
    MSG_REQUIRED,
    MSG_WRONG_TYPE,
    MagentoError,
)

SPEC_FILENAME = "admin-schema-2.4.9.yaml"
#: The official document, shipped with the sandbox (see pim_hub/sandbox/specs/README.md).
SPECS_DIR = Path(__file__).resolve().parents[1] / "specs"
DEFAULT_SPEC_PATH = SPECS_DIR / "magento" / SPEC_FILENAME

# Magento's type names in its "value's type is invalid" message (PHP types, not JSON types).
_PHP_TYPE = {
    "integer": "int",
    "number": "float",
    "string": "string",
    "boolean": "bool",
    "array": "array",
    "object": "object",
}

# The async bulk response is not in the admin document (async routes are generated at runtime);
# this mirrors Magento\WebapiAsync AsyncResponseInterface as documented in bulk-endpoints.md.
ASYNC_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["bulk_uuid", "request_items", "errors"],
    "properties": {
        "bulk_uuid": {"type": "string"},
        "request_items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "status"],
                "properties": {
                    "id": {"type": "integer"},
                    "data_hash": {"type": ["string", "null"]},
                    "status": {"type": "string", "enum": ["accepted", "rejected"]},
                    "error_message": {"type": "string"},
                },
            },
        },
        "errors": {"type": "boolean"},
    },
}

# Real Magento renders `parameters` as an object ({"resources": ...}) or a list of strings for
# %1-style placeholders; the document declares a list of objects. Responses are checked against
# the document's error-response with `parameters` widened to what the wire actually carries.
_WIRE_ERROR_PARAMETERS: dict[str, Any] = {
    "anyOf": [
        {"$ref": "#/definitions/error-parameters"},
        {"$ref": "#/definitions/error-parameters-item"},
        {"type": "array", "items": {"type": "string"}},
    ]
}


_DEFINITIONS = "#/definitions/"
# Keywords whose values are data, not schemas: a "$ref" key in them is no reference.
_NOT_SCHEMAS = frozenset({"enum", "default", "example", "required"})


@dataclass(frozen=True)
class Operation:
    """One path + method of the document."""

    method: str
    template: str
    operation_id: str
    body_schema: dict[str, Any] | None
    path_params: dict[str, str]
    query_params: dict[str, str]
    responses: dict[str, Any]
    segments: tuple[str, ...] = field(repr=False)

    @property
    def literal_count(self) -> int:
        """How many path segments are literals; the most literal template wins a match."""
        return sum(1 for s in self.segments if not s.startswith("{"))


@dataclass(frozen=True)
class Violation:
    """One schema violation, already in Magento's message/parameters form."""

    message: str
    parameters: dict[str, str]


class MagentoSpec:
    """Index of the document's operations with cached draft-4 validators."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.definitions: dict[str, Any] = document.get("definitions", {})
        self._by_shape: dict[tuple[str, int], list[Operation]] = {}
        # Keyed by id() but holding the schema too, so a recycled id never hits a stale entry.
        self._validators: dict[int, tuple[dict[str, Any], Draft4Validator]] = {}
        self._checks: dict[int, tuple[dict[str, Any], Callable[[Any], Any] | None]] = {}
        self._inlined: dict[str, Any] = {}
        for template, item in document.get("paths", {}).items():
            for method, raw in item.items():
                if method.startswith("x-") or not isinstance(raw, dict):
                    continue
                op = _operation(method.upper(), template, raw)
                self._by_shape.setdefault((op.method, len(op.segments)), []).append(op)
        for ops in self._by_shape.values():
            ops.sort(key=lambda o: -o.literal_count)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """Find the operation for a concrete `/V1/...` path; literal segments beat `{params}`."""
        segments = tuple(s for s in path.split("/") if s)
        for op in self._by_shape.get((method.upper(), len(segments)), []):
            params: dict[str, str] = {}
            for want, got in zip(op.segments, segments, strict=True):
                if want.startswith("{"):
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return op, params
        return None

    def match_bulk(self, method: str, path: str) -> tuple[Operation, list[str]] | None:
        """Match an async bulk path such as `/V1/products/bySku` to `/V1/products/{sku}`.

        Returns the operation and the names of the path parameters each body item must carry.
        """
        segments = tuple(s for s in path.split("/") if s)
        for op in self._by_shape.get((method.upper(), len(segments)), []):
            names: list[str] = []
            for want, got in zip(op.segments, segments, strict=True):
                if want.startswith("{"):
                    name = want[1:-1]
                    if got != "by" + name[:1].upper() + name[1:]:
                        break
                    names.append(name)
                elif want != got:
                    break
            else:
                return op, names
        return None

    def operation(self, method: str, template: str) -> Operation:
        """Return the operation of an exact template (KeyError when absent)."""
        segments = tuple(s for s in template.split("/") if s)
        for op in self._by_shape.get((method.upper(), len(segments)), []):
            if op.template == template:
                return op
        raise KeyError(f"{method} {template} is not in the document")

    def validator(self, schema: dict[str, Any]) -> Draft4Validator:
        """A draft-4 validator for a schema fragment whose `#/definitions` refs hit the document."""
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        # Resolving refs against a root that carries the definitions keeps the document
        # unmodified and avoids copying 500 definitions per schema. Refs are replaced by what
        # they point to beforehand: resolving one at each validation cost about half the time
        # of a product body. Draft 4 ignores a ref's siblings, so the result is the same.
        inlined = self._inline(schema, ())
        validator = Draft4Validator({**inlined, "definitions": self.definitions})
        self._validators[id(schema)] = (schema, validator)
        return validator

    def _inline(self, node: Any, within: tuple[str, ...]) -> Any:
        """A schema with its `#/definitions/...` refs replaced by their targets.

        A recursive definition keeps its ref where it would recur (the validator resolves it
        against the definitions). Inlined definitions are shared, never modified.
        """
        if isinstance(node, list):
            return [self._inline(v, within) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.removeprefix(_DEFINITIONS)
            if ref == name or name in within or name not in self.definitions:
                return node
            if name not in self._inlined:
                self._inlined[name] = self._inline(self.definitions[name], (*within, name))
            return self._inlined[name]
        return {
            key: value if key in _NOT_SCHEMAS else self._inline(value, within)
            for key, value in node.items()
        }

    def validate_body(self, op: Operation, body: Any) -> list[Violation]:
        """Validate a request body against the operation's body schema."""
        if op.body_schema is None:
            return []
        if self.valid(op.body_schema, body):
            return []
        return violations(self.validator(op.body_schema).iter_errors(body))

    def valid(self, schema: dict[str, Any], body: Any) -> bool:
        """Whether a body is valid, by code compiled from the schema (fastjsonschema).

        About 25 times faster than walking the schema with jsonschema (40 us against 1.1 ms
        for a product of 60 attributes), which made up half of this sandbox's CPU under a
        full catalogue load. Only an invalid body goes through jsonschema, whose errors
        become Magento's messages. False also when the schema cannot be compiled.
        """
        cached = self._checks.get(id(schema))
        if cached is None or cached[0] is not schema:
            try:
                check = fastjsonschema.compile(self.validator(schema).schema)
            except fastjsonschema.JsonSchemaDefinitionException:
                check = None
            cached = self._checks[id(schema)] = (schema, check)
        if cached[1] is None:
            return False
        try:
            cached[1](body)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def response_schema(self, op: Operation, status: int) -> dict[str, Any] | None:
        """The document's schema for a status of an operation (`default` when not listed)."""
        response = op.responses.get(str(status)) or op.responses.get("default")
        if not isinstance(response, dict):
            return None
        schema = response.get("schema")
        if not isinstance(schema, dict):
            return None
        if schema.get("$ref") == "#/definitions/error-response":
            return self.wire_error_schema
        return schema

    @functools.cached_property
    def wire_error_schema(self) -> dict[str, Any]:
        """The document's error-response with `parameters` as Magento really renders it."""
        base = dict(self.definitions["error-response"])
        props = dict(base["properties"])
        props["parameters"] = _WIRE_ERROR_PARAMETERS
        errors_item = dict(self.definitions["error-errors-item"])
        errors_item["properties"] = {
            **errors_item["properties"],
            "parameters": _WIRE_ERROR_PARAMETERS,
        }
        props["errors"] = {"type": "array", "items": errors_item}
        base["properties"] = props
        return base

    def validate_response(self, op: Operation | None, status: int, body: Any) -> list[str]:
        """Check a response body against the document; returns readable problems."""
        if op is None:
            schema: dict[str, Any] | None = self.wire_error_schema if status >= 400 else None
        else:
            schema = self.response_schema(op, status)
        if schema is None:
            return []
        return [_describe(e) for e in self.validator(schema).iter_errors(body)]

    def validate_schema(self, schema: dict[str, Any], body: Any) -> list[str]:
        """Check a value against an ad-hoc schema (refs resolve into the document)."""
        return [_describe(e) for e in self.validator(schema).iter_errors(body)]


def _describe(error: ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<root>"
    return f"{where}: {error.message}"


def _operation(method: str, template: str, raw: dict[str, Any]) -> Operation:
    body_schema: dict[str, Any] | None = None
    path_params: dict[str, str] = {}
    query_params: dict[str, str] = {}
    for param in raw.get("parameters", []):
        where = param.get("in")
        if where == "body":
            body_schema = param.get("schema")
        elif where == "path":
            path_params[param["name"]] = param.get("type", "string")
        elif where == "query":
            query_params[param["name"]] = param.get("type", "string")
    return Operation(
        method=method,
        template=template,
        operation_id=str(raw.get("operationId", "")),
        body_schema=body_schema,
        path_params=path_params,
        query_params=query_params,
        responses=raw.get("responses", {}),
        segments=tuple(s for s in template.split("/") if s),
    )


def _field_name(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path)


def _php_value(value: Any) -> str:
    # Magento prints arrays/objects as "array" and scalars as their string form.
    if isinstance(value, dict | list):
        return "array"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def violations(errors: Iterable[ValidationError]) -> list[Violation]:
    """Turn jsonschema errors into Magento's messages, in document order of the fields."""
    result: list[Violation] = []
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [r for r in error.validator_value if r not in error.instance]
            for name in missing:
                result.append(Violation(MSG_REQUIRED, {"fieldName": _field_name([*path, name])}))
        elif error.validator == "type":
            expected = error.validator_value
            names = expected if isinstance(expected, list) else [expected]
            result.append(
                Violation(
                    MSG_WRONG_TYPE,
                    {
                        "fieldName": _field_name(path) or "body",
                        "value": _php_value(error.instance),
                        "type": "|".join(_PHP_TYPE.get(str(n), str(n)) for n in names),
                    },
                )
            )
        else:
            result.append(
                Violation(
                    MSG_INVALID_VALUE,
                    {"fieldName": _field_name(path) or "body", "value": _php_value(error.instance)},
                )
            )
    return result


def violation_error(found: list[Violation]) -> MagentoError:
    """400 for schema violations: the first one on top, all of them in `errors`."""
    first = found[0]
    extra = (
        [{"message": v.message, "parameters": v.parameters} for v in found]
        if len(found) > 1
        else None
    )
    return MagentoError(400, first.message, first.parameters, errors=extra)


_INTEGER = re.compile(r"^-?\d+$")


def check_scalar(name: str, raw: str, swagger_type: str) -> Violation | None:
    """Validate a path or query parameter string against its Swagger type."""
    if swagger_type == "integer" and not _INTEGER.match(raw):
        return Violation(MSG_WRONG_TYPE, {"fieldName": name, "value": raw, "type": "int"})
    if swagger_type == "number":
        try:
            float(raw)
        except ValueError:
            return Violation(MSG_WRONG_TYPE, {"fieldName": name, "value": raw, "type": "float"})
    if swagger_type == "boolean" and raw.lower() not in {"true", "false", "0", "1", ""}:
        return Violation(MSG_WRONG_TYPE, {"fieldName": name, "value": raw, "type": "bool"})
    return None


def resolve_spec_path(spec_path: str | Path | None = None) -> Path:
    """The spec path given, or the copy shipped with the sandbox (`pim_hub/sandbox/specs/magento/`)."""
    return Path(spec_path).resolve() if spec_path is not None else DEFAULT_SPEC_PATH


@functools.lru_cache(maxsize=4)
def _load(path: str) -> MagentoSpec:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=loader)  # noqa: S506 - a SafeLoader variant
    return MagentoSpec(document)


def load_spec(spec_path: str | Path | None = None) -> MagentoSpec:
    """Load (once per process and path) and index the Magento admin document."""
    path = resolve_spec_path(spec_path)
    if not path.is_file():
        raise FileNotFoundError(f"Magento admin schema not found at {path}")
    return _load(str(path))
