"""The webhook driver under the driver contract (an in-memory HTTP receiver)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from drivers.base import IntegrationContext
from drivers.webhook.driver import WebhookConfig, WebhookDriver
from schemas.events import Job
from tests.contract.driver_contract import ContractEnv, DriverContract
from tests.unit.magento2.helpers import MemoryMapping


def _job(job_id: str, entity_key: str) -> Job:
    now = datetime.now(UTC)
    return Job.model_validate(
        {
            "job_id": job_id,
            "mutation": {
                "mutation_id": f"m-{job_id}",
                "entity_type": "product",
                "entity_key": entity_key,
                "operation": "update",
                "changes": [{"field": "enabled", "old": "false", "new": "true"}],
                "state": orjson.dumps({"uuid": entity_key, "enabled": True}).decode(),
                "causation_id": "c",
                "source_received_at": now,
                "created_at": now,
            },
            "integration_id": "hook",
            "driver": "webhook",
            "priority": "normal",
            "created_at": now,
        }
    )


class TestWebhookContract(DriverContract):
    driver_cls = WebhookDriver

    def valid_config(self) -> dict[str, Any]:
        return {"url": "http://receiver.test/hook"}

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[ContractEnv]:
        received: dict[str, Any] = {}
        failures: list[int] = []

        def receive(request: httpx.Request) -> httpx.Response:
            if failures:
                return httpx.Response(failures.pop())
            body = orjson.loads(request.content)
            if body["entity_key"] == "rejected":
                return httpx.Response(422, json={"error": "unknown entity"})
            # A well-behaved receiver deduplicates on Idempotency-Key.
            received[request.headers["Idempotency-Key"]] = body["changes"]
            return httpx.Response(204)

        async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as http:
            context = IntegrationContext(
                integration_id="hook",
                config=WebhookConfig.model_validate(self.valid_config()),
                mapping=MemoryMapping(),
                http=http,
                logger=logging.getLogger("tests.contract.webhook"),
            )
            yield ContractEnv(
                context=context,
                accepted_job=_job("j1", "product:a"),
                rejected_job=_job("j2", "rejected"),
                inject_server_error=lambda: failures.append(503),
                target_state=lambda: orjson.dumps(received, option=orjson.OPT_SORT_KEYS),
            )
