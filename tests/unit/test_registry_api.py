"""The Schema Registry test double checked against the registry's API, as documented.

tests/registry_api.yaml is the subset of the Schema Registry REST API the hub's client uses,
written from the registry's published API reference (OpenAPI 3.1). Every answer the double
(tests/registry_double.py) gives here must be one the document allows for that operation:
a documented status, the v1 content type, a body of the documented shape and, for an error,
one of the documented error codes. Every documented answer is produced at least once, and
every request confluent-kafka's SchemaRegistryClient makes for the hub is a documented
operation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry as RefRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT202012

from tests.registry_double import CONTENT_TYPE, FakeSchemaRegistry

SPEC_PATH = Path(__file__).parents[1] / "registry_api.yaml"
SPEC_URI = "urn:registry-api"
METHODS = ("get", "put", "post", "delete")

V1 = json.dumps(
    {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]},
)
# Adds a field without a default: a BACKWARD break (the new reader misses it in old data).
V2_BREAKS = json.dumps(
    {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "string"}],
    }
)
V2_FITS = json.dumps(
    {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": "string"},
            {"name": "b", "type": ["null", "string"], "default": None},
        ],
    }
)


@cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _deref(node: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A `$ref` to components followed (and where it leads, as pointer parts)."""
    ref = node.get("$ref")
    if ref is None:
        return node, []
    parts = ref.removeprefix("#/").split("/")
    target: Any = spec()
    for part in parts:
        target = target[part]
    return target, parts


def operation_of(method: str, path: str) -> tuple[str, str]:
    """The documented (path template, method) that a request matches."""
    for template, item in spec()["paths"].items():
        pattern = "^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, method.lower()
    raise AssertionError(f"{method} {path} is not an operation of {SPEC_PATH.name}")


def documented_answers() -> set[tuple[str, str, str]]:
    """(path template, method, status) of every documented answer."""
    return {
        (template, method, status)
        for template, item in spec()["paths"].items()
        for method in METHODS
        if method in item
        for status in item[method]["responses"]
    }


class Checker:
    """Sends requests to the double and checks each answer against the document."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None) -> None:
        self.http = httpx.Client(base_url=url, auth=auth, timeout=10)
        self.seen: set[tuple[str, str, str]] = set()
        registry = RefRegistry().with_resource(
            SPEC_URI, Resource.from_contents(spec(), default_specification=DRAFT202012)
        )
        self.registry = registry

    def __call__(
        self, method: str, path: str, body: Any = None, status: int = 200, **params: str
    ) -> Any:
        """One request; returns the JSON body after checking it."""
        answer = self.http.request(
            method,
            path,
            params=params or None,
            content=None if body is None else json.dumps(body),
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        template, verb = operation_of(method, path)
        operation = spec()["paths"][template][verb]
        code = str(answer.status_code)
        assert code in operation["responses"], (
            f"{method} {path}: {code} is not documented for {template}: {answer.text}"
        )
        assert answer.status_code == status, f"{method} {path}: {code} {answer.text}"
        assert answer.headers["content-type"] == CONTENT_TYPE
        documented, where = _deref(operation["responses"][code])
        if not where:
            where = ["paths", template, verb, "responses", code]
        media = documented["content"][CONTENT_TYPE]
        pointer = _pointer(*where, "content", CONTENT_TYPE, "schema")
        validator = Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry)
        data = answer.json()
        errors = [e.message for e in validator.iter_errors(data)]
        assert not errors, f"{method} {path} -> {code}: {errors} in {data}"
        assert media["schema"] is not None
        if "x-error-codes" in documented:
            assert data["error_code"] in documented["x-error-codes"], (
                f"{method} {path}: error_code {data['error_code']} is not documented for {code}"
            )
        self.seen.add((template, verb, code))
        return data


@pytest.fixture
def double() -> Iterator[FakeSchemaRegistry]:
    registry = FakeSchemaRegistry()
    yield registry
    registry.stop()


def test_the_document_is_openapi_31_with_valid_schemas() -> None:
    doc = spec()
    assert doc["openapi"].startswith("3.1")
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name
    for template, item in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", template))
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            params = [_deref(p)[0] for p in op.get("parameters", [])]
            assert {p["name"] for p in params if p["in"] == "path"} == names, template
            assert "operationId" in op and op["responses"], template
            for status, response in op["responses"].items():
                response = _deref(response)[0]
                schema = response["content"][CONTENT_TYPE]["schema"]
                if status != "200":
                    assert "x-error-codes" in response, (template, method, status)
                    assert _deref(schema)[1][-1] == "Error", (template, method, status)


def _answers_of_the_double(check: Checker, double: FakeSchemaRegistry) -> None:
    """Every documented answer but 401, in a registry's life."""
    s = "/subjects/hub.test-value"
    check("GET", "/subjects")
    first = check("POST", f"{s}/versions", {"schema": V1})["id"]
    assert check("POST", f"{s}/versions", {"schema": V1}, normalize="false")["id"] == first
    check("POST", f"{s}/versions", {"schema": "{not avro"}, 422)
    check("POST", f"{s}/versions", {"schema": V2_BREAKS}, 409)
    found = check("POST", s, {"schema": V1}, normalize="false", deleted="false")
    assert (found["id"], found["version"]) == (first, 1)
    check("POST", "/subjects/hub.none-value", {"schema": V1}, 404)
    check("POST", s, {"schema": V2_FITS}, 404)
    assert check("GET", f"/schemas/ids/{first}", subject="hub.test-value")["schema"] == V1
    check("GET", "/schemas/ids/999", status=404)
    assert check("GET", f"{s}/versions") == [1]
    check("GET", "/subjects/hub.none-value/versions", status=404)
    for version in ("1", "latest", "-1"):
        assert check("GET", f"{s}/versions/{version}")["id"] == first
    check("GET", f"{s}/versions/9", status=404)
    check("GET", f"{s}/versions/abc", status=422)
    check("GET", f"{s}/versions/0", status=422)
    verdict = check(
        "POST", f"/compatibility{s}/versions/latest", {"schema": V2_BREAKS}, verbose="true"
    )
    assert verdict["is_compatible"] is False and verdict["messages"]
    fits = check("POST", f"/compatibility{s}/versions/1", {"schema": V2_FITS})
    assert fits == {"is_compatible": True}
    check("POST", "/compatibility/subjects/hub.none-value/versions/latest", {"schema": V1}, 404)
    check("POST", f"/compatibility{s}/versions/7", {"schema": V1}, 404)
    check("POST", f"/compatibility{s}/versions/latest", {"schema": "[oops"}, 422)
    check("POST", f"/compatibility{s}/versions/x", {"schema": V1}, 422)
    assert check("GET", "/config")["compatibilityLevel"] == "BACKWARD"
    check("PUT", "/config", {"compatibility": "FULL"})
    check("PUT", "/config", {"compatibility": "SOMETIMES"}, 422)
    check("GET", "/config/hub.test-value", status=404)
    level = check("GET", "/config/hub.test-value", defaultToGlobal="true")
    assert level["compatibilityLevel"] == "FULL"
    check("PUT", "/config/hub.test-value", {"compatibility": "NONE"})
    check("PUT", "/config/hub.test-value", {"compatibility": "none"}, 422)
    assert check("GET", "/config/hub.test-value")["compatibilityLevel"] == "NONE"
    assert check("GET", "/mode")["mode"] == "READWRITE"
    check("PUT", "/mode", {"mode": "READONLY"})
    check("POST", f"{s}/versions", {"schema": V2_FITS}, 422)
    check("PUT", "/mode", {"mode": "SOMETIMES"}, 422)
    check("PUT", "/mode", {"mode": "READWRITE"})
    assert check("POST", f"{s}/versions", {"schema": V2_FITS})["id"] != first


def test_every_answer_of_the_double_is_documented_and_every_documented_one_is_given(
    double: FakeSchemaRegistry,
) -> None:
    check = Checker(double.url)
    _answers_of_the_double(check, double)

    # With credentials set, each operation refuses a request without them (401).
    guarded = FakeSchemaRegistry(credentials=("key", "secret"))
    try:
        anonymous = Checker(guarded.url)
        for template, method, _status in sorted(documented_answers()):
            path = template.replace("{subject}", "s").replace("{version}", "1")
            path = path.replace("{id}", "1")
            body = {"schema": V1} if method in ("post", "put") else None
            anonymous(method.upper(), path, body, 401)
        authorised = Checker(guarded.url, auth=("key", "secret"))
        authorised("GET", "/subjects")
    finally:
        guarded.stop()
    seen = check.seen | anonymous.seen
    missing = documented_answers() - seen
    assert not missing, f"documented answers the double never gave: {sorted(missing)}"


def test_the_client_calls_only_documented_operations(double: FakeSchemaRegistry) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": double.url})
    subject = "hub.client-value"
    client.set_compatibility(subject, "BACKWARD")
    schema_id = client.register_schema(subject, Schema(V1, "AVRO"))
    assert client.lookup_schema(subject, Schema(V1, "AVRO")).schema_id == schema_id
    assert client.get_schema(schema_id).schema_str == V1
    assert client.get_latest_version(subject).version == 1
    assert client.get_versions(subject) == [1]
    assert client.test_compatibility(subject, Schema(V2_FITS, "AVRO"))
    assert not client.test_compatibility(subject, Schema(V2_BREAKS, "AVRO"))
    assert client.get_compatibility(subject) == "BACKWARD"
    assert subject in client.get_subjects()
    assert double.state.requests
    for method, path in double.state.requests:
        operation_of(method, path)
