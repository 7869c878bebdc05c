"""The webhook driver's answers to a target's statuses and to a broken mutation (loopback HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web

from pim_hub.drivers.base import IntegrationContext, decoded_changes
from pim_hub.drivers.webhook.driver import WebhookConfig, WebhookDriver, job_body
from pim_hub.schemas.events import Change, Job, Mutation
from tests.hook_server import Handler, serve_hook

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _job(state: str | None = '{"uuid": "u"}', changes: list[Change] | None = None) -> Job:
    mutation = Mutation(
        mutation_id="m",
        entity_type="product",
        entity_key="product:u",
        operation="update",
        changes=changes or [],
        state=state,
        causation_id="e",
        source_received_at=NOW,
        created_at=NOW,
    )
    return Job(
        job_id="j-1",
        mutation=mutation,
        integration_id="i",
        driver="webhook",
        priority="normal",
        created_at=NOW,
    )


def _context(url: str, **config: Any) -> IntegrationContext:
    return IntegrationContext(
        integration_id="i",
        config=WebhookConfig.model_validate({"url": url, **config}),
        mapping=None,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
    )


def _deliver(jobs: list[Job], handler: Handler, **config: Any) -> list[Any]:
    async def go() -> list[Any]:
        runner, url = await serve_hook(handler)
        driver = WebhookDriver()
        ctx = _context(url, **config)
        await driver.open(ctx)
        try:
            return [await driver.handle(job, ctx) for job in jobs]
        finally:
            await driver.close()
            await runner.cleanup()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("status", "outcome", "retryable"),
    [
        (200, "delivered", False),
        (204, "delivered", False),
        (429, "failed", True),
        (503, "failed", True),
        (422, "failed", False),
        (404, "failed", False),
        (302, "failed", False),  # redirects are not followed: a POST must not become a GET
    ],
)
def test_status_codes_map_to_outcomes(status: int, outcome: str, retryable: bool) -> None:
    async def handler(request: web.Request) -> web.Response:
        headers = {"Retry-After": "7", "Location": "/elsewhere"}
        return web.Response(status=status, headers=headers, text="" if status == 204 else "why")

    [result] = _deliver([_job()], handler)
    assert result.outcome == outcome
    assert result.retryable is retryable
    if status == 429:
        assert result.retry_after == 7.0
    if outcome == "failed":
        assert result.target_status == status and result.error_kind == f"http_{status}"


def test_body_is_signed_and_carries_the_idempotency_key() -> None:
    seen: list[tuple[Any, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers, await request.read()))
        return web.Response(status=200)

    job = _job(changes=[Change(field="values", attribute="name", old='"a"', new='"b"')])
    assert _deliver([job], handler, secret="s3cret")[0].outcome == "delivered"
    headers, body = seen[0]
    assert headers["Idempotency-Key"] == "j-1"
    assert headers["X-PimHub-Entity"] == "product:u"
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-PimHub-Signature"] == expected
    sent = orjson.loads(body)
    assert sent["state"] == {"uuid": "u"}
    assert sent["changes"] == [
        {
            "field": "values",
            "attribute": "name",
            "locale": None,
            "scope": None,
            "old": "a",
            "new": "b",
        }
    ]
    assert sent == job_body(job)


def test_connections_are_kept_alive_between_jobs() -> None:
    peers: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(status=204)

    results = _deliver([_job(), _job(), _job()], handler)
    assert [r.outcome for r in results] == ["delivered"] * 3
    assert len(peers) == 3 and len(set(peers)) == 1, "one connection served every POST"


def test_connection_error_is_retryable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go() -> Any:
        driver = WebhookDriver()
        ctx = _context(f"http://127.0.0.1:{port}/hook")
        await driver.open(ctx)
        try:
            return await driver.handle(_job(), ctx)
        finally:
            await driver.close()

    result = asyncio.run(go())
    assert result.outcome == "failed" and result.retryable and result.error_kind == "connection"


def test_a_slow_target_is_a_retryable_timeout() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(status=200)

    [result] = _deliver([_job()], handler, timeout_s=0.1)
    assert result.outcome == "failed" and result.retryable and result.error_kind == "timeout"


def test_a_mutation_that_is_not_json_is_a_permanent_failure() -> None:
    calls: list[web.Request] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request)
        return web.Response(status=200)

    [result] = _deliver([_job(state="{not json")], handler)
    assert result.outcome == "failed" and not result.retryable
    assert result.error_kind == "bad_mutation"
    assert calls == [], "nothing is sent for a broken mutation"


def test_decoded_changes_with_and_without_values() -> None:
    job = _job(
        changes=[
            Change(field="values", attribute="name", locale="en_US", old=None, new='{"x": 1}'),
            Change(field="categories", added=["a"], removed=["b"], old="[]", new='["a"]'),
        ]
    )
    assert decoded_changes(job) == [
        {
            "field": "values",
            "attribute": "name",
            "locale": "en_US",
            "scope": None,
            "old": None,
            "new": {"x": 1},
        },
        {
            "field": "categories",
            "attribute": None,
            "locale": None,
            "scope": None,
            "old": [],
            "new": ["a"],
            "added": ["a"],
            "removed": ["b"],
        },
    ]
    assert decoded_changes(job, include_values=False) == [
        {"field": "values", "attribute": "name", "locale": "en_US", "scope": None},
        {"field": "categories", "attribute": None, "locale": None, "scope": None},
    ]
