"""Checks a webhook request (headers and body) against the JSON Schema shipped in the package.

The loopback receivers of the tests (`tests.hook_server.serve_hook`, the `HttpSink` fixtures)
run every request they get through `check_request`; a violation is recorded in `VIOLATIONS`
and fails the test that caused it (the autouse fixture in tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson

from pim_hub.drivers.webhook import payload_schema

VALIDATOR = jsonschema.Draft202012Validator(payload_schema())

#: Every violation seen by a test receiver, in order (tests look at what their run added).
VIOLATIONS: list[str] = []


def check_request(headers: Mapping[str, str], raw: bytes, secret: str | None = None) -> list[str]:
    """What is wrong with one webhook request; an empty list when it matches the contract."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [f"body is not JSON: {exc}"]
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
        for e in VALIDATOR.iter_errors(body)
    ]
    if errors:
        return errors
    if not h.get("content-type", "").startswith("application/json"):
        errors.append(f"Content-Type is {h.get('content-type')!r}")
    if h.get("idempotency-key") != body["job_id"]:
        errors.append(f"Idempotency-Key {h.get('idempotency-key')!r} is not the job id")
    if h.get("x-pimhub-entity") != body["entity_key"]:
        errors.append(f"X-PimHub-Entity {h.get('x-pimhub-entity')!r} is not the entity key")
    if secret is not None:
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        if h.get("x-pimhub-signature") != expected:
            errors.append("X-PimHub-Signature is not the HMAC-SHA256 of the body")
    return errors


def record(headers: Mapping[str, str], raw: bytes) -> None:
    """Check one request a test receiver got and keep what is wrong with it."""
    VIOLATIONS.extend(check_request(headers, raw))


def is_webhook_request(headers: Mapping[str, str]) -> bool:
    """Whether a request came from the webhook driver (receivers may get other requests too)."""
    return any(k.lower() == "idempotency-key" for k in headers)


def record_sink(requests: list[Any]) -> None:
    """Check what an HttpSink received (its webhook requests, bodies as parsed JSON)."""
    for r in requests:
        if is_webhook_request(r.headers):
            record(r.headers, orjson.dumps(r.body))
