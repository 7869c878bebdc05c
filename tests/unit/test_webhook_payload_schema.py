"""The webhook request contract: the shipped JSON Schema, the driver's real requests, the docs."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from pim_hub.drivers.base import IntegrationContext
from pim_hub.drivers.webhook import payload_schema
from pim_hub.drivers.webhook.driver import WebhookConfig, WebhookDriver, job_body
from pim_hub.ops.replay import JOB_MODES
from pim_hub.schemas.entities import ENTITY_TYPES
from pim_hub.schemas.events import Job, Mutation
from pim_hub.services.mutator.core import diffing
from tests import webhook_schema
from tests.hook_server import serve_hook

NOW = datetime(2026, 12, 1, tzinfo=UTC)
DOC = Path(__file__).resolve().parents[2] / "docs" / "webhook-driver.md"
SECRET = "s3cret"

BEFORE: dict[str, Any] = {
    "uuid": "0d4c1f7e-3c1a-4bde-9d45-2f3a9a6c1b10",
    "identifier": "tee-1",
    "enabled": False,
    "family": "clothing",
    "categories": ["men", "summer"],
    "values": {
        "name": [{"locale": "en_US", "scope": None, "data": "Tee"}],
        "price": [
            {"locale": None, "scope": None, "data": [{"amount": "10.00", "currency": "EUR"}]}
        ],
        "colors": [{"locale": None, "scope": "ecommerce", "data": ["red", "blue"]}],
    },
    "updated": "2026-12-01T10:00:00+00:00",
}
AFTER: dict[str, Any] = {
    **BEFORE,
    "enabled": True,
    "categories": ["men", "winter"],
    "values": {
        "name": [{"locale": "en_US", "scope": None, "data": "Warm tee"}],
        "price": [
            {"locale": None, "scope": None, "data": [{"amount": "12.50", "currency": "EUR"}]}
        ],
        "colors": [{"locale": None, "scope": "ecommerce", "data": ["red", "green"]}],
    },
    "updated": "2026-12-01T11:00:00+00:00",
}


def _mutation(before: dict[str, Any] | None, after: dict[str, Any] | None) -> Mutation:
    """The mutation the mutator's own diff makes of two payloads (as on hub.mutations)."""
    key = "product:" + BEFORE["uuid"]
    stored = diffing.index_state("product", before) if before is not None else None
    version = after["updated"] if after is not None else None
    decision = diffing.decide("product", key, stored, after, version)
    assert decision.kind == "mutation"
    return Mutation.model_validate(
        {
            "mutation_id": decision.mutation_id,
            "entity_type": "product",
            "entity_key": key,
            "operation": decision.operation,
            "changes": [diffing.change_to_record(c) for c in decision.changes],
            "state": orjson.dumps(decision.state_payload).decode()
            if decision.state_payload is not None
            else None,
            "version": version,
            "causation_id": "e-1",
            "source_received_at": NOW,
            "created_at": NOW,
        }
    )


def _jobs() -> list[Job]:
    mutations = [_mutation(None, BEFORE), _mutation(BEFORE, AFTER), _mutation(AFTER, None)]
    modes = ["live", "redrive", "resync", *JOB_MODES.values()]
    return [
        Job(
            job_id=f"job-{i}-{mode}",
            mutation=m,
            integration_id="my-hook",
            driver="webhook",
            priority="normal",
            attempt=1 + i,
            mode=mode,
            created_at=NOW,
        )
        for i, m in enumerate(mutations)
        for mode in modes
    ]


def test_the_mutator_diff_gives_every_kind_of_change() -> None:
    """The jobs below cover values, scalar fields and set-like fields (added/removed)."""
    update = _mutation(BEFORE, AFTER)
    kinds = {(c.field, c.added is not None) for c in update.changes}
    assert ("values", False) in kinds and ("enabled", False) in kinds
    assert ("categories", True) in kinds
    assert {m.operation for m in (_mutation(None, BEFORE), update, _mutation(AFTER, None))} == {
        "create",
        "update",
        "delete",
    }


@pytest.mark.parametrize("include_state", [True, False])
def test_every_request_the_driver_sends_matches_the_schema(include_state: bool) -> None:
    """Real requests (with a signature) for creates, updates, deletes in every mode."""
    got: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def go() -> list[Any]:
        runner, url = await serve_hook(receive)
        driver = WebhookDriver()
        ctx = IntegrationContext(
            integration_id="my-hook",
            config=WebhookConfig.model_validate(
                {"url": url, "secret": SECRET, "include_state": include_state}
            ),
            mapping=None,  # type: ignore[arg-type]
            http=None,  # type: ignore[arg-type]
            logger=logging.getLogger("test"),
        )
        try:
            return [await driver.handle(job, ctx) for job in _jobs()]
        finally:
            await driver.close()
            await runner.cleanup()

    results = asyncio.run(go())
    assert [r.outcome for r in results] == ["delivered"] * len(_jobs())
    assert len(got) == len(_jobs())
    for headers, raw in got:
        assert webhook_schema.check_request(headers, raw, secret=SECRET) == []
        assert ("state" in orjson.loads(raw)) is include_state


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda b: b.pop("job_id"), "'job_id' is a required property"),
        (lambda b: b.update(mode="sometimes"), "'sometimes' is not one of"),
        (lambda b: b.update(attempt=0), "less than the minimum"),
        (lambda b: b["changes"][0].update(colour="red"), "Additional properties"),
        (lambda b: b["changes"][0].pop("scope"), "'scope' is a required property"),
    ],
)
def test_the_schema_rejects_what_the_driver_never_sends(change: Any, why: str) -> None:
    body = job_body(_jobs()[7])
    change(body)
    headers = {"Content-Type": "application/json", "Idempotency-Key": "x", "X-PimHub-Entity": "y"}
    errors = webhook_schema.check_request(headers, orjson.dumps(body))
    assert any(why in e for e in errors), errors


def test_headers_and_signature_are_checked() -> None:
    job = _jobs()[0]
    raw = orjson.dumps(job_body(job))
    good = {
        "Content-Type": "application/json",
        "Idempotency-Key": job.job_id,
        "X-PimHub-Entity": job.mutation.entity_key,
    }
    assert webhook_schema.check_request(good, raw) == []
    assert webhook_schema.check_request({**good, "Idempotency-Key": "other"}, raw)
    assert webhook_schema.check_request({**good, "X-PimHub-Signature": "00"}, raw, secret=SECRET)


def test_the_schema_lists_every_mode_and_entity_type() -> None:
    schema = payload_schema()
    assert set(schema["properties"]["mode"]["enum"]) == {
        "live",
        "redrive",
        "resync",
        *JOB_MODES.values(),
    }
    assert set(schema["properties"]["entity_type"]["enum"]) == set(ENTITY_TYPES)
    # Every field the driver sends is described, and the documentation names each of them.
    body = job_body(_jobs()[7])
    assert set(body) == set(schema["properties"])
    doc = DOC.read_text()
    for name in [*schema["properties"], *schema["$defs"]["change"]["properties"]]:
        assert f"`{name}`" in doc, f"docs/webhook-driver.md does not describe {name}"
    for header in ("Idempotency-Key", "X-PimHub-Entity", "X-PimHub-Signature"):
        assert f"`{header}`" in doc
