"""The webhook driver's answers to a target's statuses and to a broken mutation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from drivers.base import IntegrationContext
from drivers.webhook.driver import WebhookConfig, WebhookDriver
from schemas.events import Job, Mutation

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _job(state: str | None = '{"uuid": "u"}') -> Job:
    mutation = Mutation(
        mutation_id="m",
        entity_type="product",
        entity_key="product:u",
        operation="update",
        changes=[],
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


def _deliver(job: Job, handler: Any, **config: Any) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            ctx = IntegrationContext(
                integration_id="i",
                config=WebhookConfig.model_validate({"url": "http://sink.test/hook", **config}),
                mapping=None,  # type: ignore[arg-type]
                http=http,
                logger=logging.getLogger("test"),
            )
            return await WebhookDriver().handle(job, ctx)

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
    ],
)
def test_status_codes_map_to_outcomes(status: int, outcome: str, retryable: bool) -> None:
    result = _deliver(_job(), lambda req: httpx.Response(status, headers={"Retry-After": "7"}))
    assert result.outcome == outcome
    assert result.retryable is retryable
    if status == 429:
        assert result.retry_after == 7.0


def test_body_is_signed_and_carries_the_idempotency_key() -> None:
    seen: dict[str, Any] = {}

    def handler(req: httpx.Request) -> httpx.Response:
        seen["headers"], seen["body"] = req.headers, req.content
        return httpx.Response(200)

    assert _deliver(_job(), handler, secret="s3cret").outcome == "delivered"
    assert seen["headers"]["Idempotency-Key"] == "j-1"
    expected = hmac.new(b"s3cret", seen["body"], hashlib.sha256).hexdigest()
    assert seen["headers"]["X-PimHub-Signature"] == expected
    assert orjson.loads(seen["body"])["state"] == {"uuid": "u"}


def test_connection_error_is_retryable() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    result = _deliver(_job(), handler)
    assert result.outcome == "failed" and result.retryable and result.error_kind == "connection"


def test_a_mutation_that_is_not_json_is_a_permanent_failure() -> None:
    calls: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(200)

    result = _deliver(_job(state="{not json"), handler)
    assert result.outcome == "failed" and not result.retryable
    assert result.error_kind == "bad_mutation"
    assert calls == [], "nothing is sent for a broken mutation"
