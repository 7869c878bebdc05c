"""Validate request and response bodies against a Swagger 2.0 document with jsonschema."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

import pim_hub.sandbox

SPECS_DIR = Path(pim_hub.sandbox.__file__).resolve().parent / "specs"
_DOC_URI = "urn:swagger-document"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


class SpecValidationError(AssertionError):
    """A body does not match the document; the message lists every violation."""


def _pointer(*parts: str) -> str:
    """JSON pointer (RFC 6901) of path segments, URL-quoted for use in a $ref fragment."""
    escaped = (p.replace("~", "~0").replace("/", "~1") for p in parts)
    return quote("/" + "/".join(escaped), safe="/~")


def _relax(node: Any, nullable: bool, any_type: frozenset[str]) -> Any:
    """Adapt Swagger 2.0 schemas to how the vendors' APIs really answer.

    Swagger 2.0 has no `nullable`, yet both Akeneo and Magento return `null` for unset
    properties (product `parent`, value `locale`/`scope`, token `scope`); with `nullable`
    every *object property* also accepts null. `any_type` names properties whose declared
    type is only a placeholder (Akeneo's `values[].data` says `object` but holds strings,
    numbers, arrays...): their `type` is dropped, the rest of their schema is kept.
    """
    if isinstance(node, list):
        return [_relax(n, nullable, any_type) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _relax(v, nullable, any_type) for k, v in node.items()}
    props = out.get("properties")
    if isinstance(props, dict) and all(isinstance(v, dict) for v in props.values()):
        for name, schema in props.items():
            if name in any_type:
                schema.pop("type", None)
            elif nullable and isinstance(schema.get("type"), str):
                schema["type"] = [schema["type"], "null"]
                if "enum" in schema:
                    schema["enum"] = [*schema["enum"], None]
    return out


class SwaggerDocument:
    """A loaded Swagger 2.0 document that validates bodies of its operations.

    Example:
        doc = SwaggerDocument.load(SPECS_DIR / "akeneo" / "akeneo-web-api.json",
                                   any_type_properties={"data"})
        doc.validate_response("get", "/api/rest/v1/products-uuid/{uuid}", 200, body)
    """

    def __init__(
        self,
        document: dict[str, Any],
        *,
        nullable: bool = True,
        any_type_properties: Iterable[str] = (),
    ) -> None:
        if document.get("swagger") != "2.0":
            raise ValueError("not a Swagger 2.0 document")
        self.raw = document
        self.document = _relax(copy.deepcopy(document), nullable, frozenset(any_type_properties))
        resource = Resource.from_contents(self.document, default_specification=DRAFT4)
        self._registry: Registry[Any] = Registry().with_resource(_DOC_URI, resource)
        self._templates: list[tuple[re.Pattern[str], str]] = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"), p)
            for p in self.document.get("paths", {})
        ]

    @classmethod
    def load(cls, path: Path | str, **options: Any) -> SwaggerDocument:
        """Read a JSON or YAML (by suffix) Swagger 2.0 document."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            # The C loader reads Magento's 5 MB document in a fraction of pure Python's time.
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            return cls(yaml.load(text, Loader=loader), **options)  # noqa: S506 - safe loaders
        return cls(json.loads(text), **options)

    # ------------------------------------------------------------------ lookup
    def template_for(self, method: str, path: str) -> str:
        """The path template (e.g. `/products-uuid/{uuid}`) matching a concrete path."""
        path = path.split("?", 1)[0]
        if path in self.document["paths"]:
            return path
        for regex, template in self._templates:
            if regex.match(path) and method.lower() in self.document["paths"][template]:
                return template
        raise KeyError(f"no operation {method.upper()} {path} in the document")

    def _resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Follow a local `$ref` (responses and parameters may be references)."""
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node, None
        target: Any = self.document
        for part in ref.lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return target, ref

    def operation(self, method: str, template: str) -> dict[str, Any]:
        """The operation object of (method, path template)."""
        try:
            op = self.document["paths"][template][method.lower()]
        except KeyError:
            raise KeyError(f"no operation {method.upper()} {template} in the document") from None
        if not isinstance(op, dict):
            raise KeyError(template)
        return op

    def response_schema_pointer(self, method: str, template: str, status: int) -> str | None:
        """JSON pointer of the response schema; None when the response has no body schema."""
        responses = self.operation(method, template)["responses"]
        key = str(status) if str(status) in responses else "default"
        if key not in responses:
            raise KeyError(f"{method.upper()} {template} documents no {status} response")
        response, ref = self._resolve(responses[key])
        if "schema" not in response:
            return None
        if ref is not None:
            return ref.lstrip("#") + "/schema"
        return _pointer("paths", template, method.lower(), "responses", key, "schema")

    def request_schema_pointer(self, method: str, template: str) -> str | None:
        """JSON pointer of the `in: body` parameter's schema, if the operation has one."""
        op = self.operation(method, template)
        for i, param in enumerate(op.get("parameters", [])):
            resolved, ref = self._resolve(param)
            if resolved.get("in") == "body":
                if ref is not None:
                    return ref.lstrip("#") + "/schema"
                return _pointer("paths", template, method.lower(), "parameters", str(i), "schema")
        return None

    # ------------------------------------------------------------------ validation
    @cache  # noqa: B019 - documents live for the test session; validators are costly
    def _validator(self, pointer: str) -> jsonschema.Draft4Validator:
        return jsonschema.Draft4Validator(
            {"$ref": f"{_DOC_URI}#{pointer}"}, registry=self._registry
        )

    def _check(self, pointer: str, body: Any, what: str) -> None:
        errors = sorted(self._validator(pointer).iter_errors(body), key=lambda e: list(e.path))
        if errors:
            lines = [f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:20]]
            raise SpecValidationError(f"{what} does not match the document:\n" + "\n".join(lines))

    def validate_response(self, method: str, path: str, status: int, body: Any) -> None:
        """Validate a decoded response body; `path` may be a template or a concrete path."""
        template = self.template_for(method, path)
        pointer = self.response_schema_pointer(method, template, status)
        if pointer is None:
            raise SpecValidationError(
                f"{method.upper()} {template} {status} has no body schema to validate against"
            )
        self._check(pointer, body, f"response {method.upper()} {template} {status}")

    def validate_definition(self, name: str, body: Any) -> None:
        """Validate against `#/definitions/<name>` (e.g. a shared `Error` shape)."""
        if name not in self.document.get("definitions", {}):
            raise KeyError(f"no definition {name!r} in the document")
        self._check(_pointer("definitions", name), body, f"definition {name}")

    def validate_request(self, method: str, path: str, body: Any) -> None:
        """Validate a decoded request body against the operation's `in: body` parameter."""
        template = self.template_for(method, path)
        pointer = self.request_schema_pointer(method, template)
        if pointer is None:
            raise SpecValidationError(f"{method.upper()} {template} takes no body")
        self._check(pointer, body, f"request {method.upper()} {template}")


def validate_schema(
    schema: dict[str, Any],
    body: Any,
    *,
    nullable: bool = True,
    any_type_properties: Iterable[str] = (),
) -> None:
    """Validate against a standalone schema (e.g. Akeneo's events-serenity YAML files)."""
    relaxed = _relax(copy.deepcopy(schema), nullable, frozenset(any_type_properties))
    errors = list(jsonschema.Draft4Validator(relaxed).iter_errors(body))
    if errors:
        lines = [f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:20]]
        raise SpecValidationError("body does not match the schema:\n" + "\n".join(lines))
