"""The webhook driver under the driver contract (an HTTP receiver on loopback)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from pim_hub.drivers.base import Driver, IntegrationContext
from pim_hub.drivers.webhook.driver import WebhookConfig, WebhookDriver
from pim_hub.schemas.events import Job
from tests.contract.driver_contract import ContractEnv, DriverContract
from tests.hook_server import serve_hook
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

    async def _driver(self, env: ContractEnv) -> Driver:
        driver = await super()._driver(env)
        self.opened.append(driver)  # closed with the environment (its connections)
        return driver

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[ContractEnv]:
        received: dict[str, Any] = {}
        failures: list[int] = []
        self.opened: list[Driver] = []

        async def receive(request: web.Request) -> web.Response:
            if failures:
                return web.Response(status=failures.pop())
            body = orjson.loads(await request.read())
            if body["entity_key"] == "rejected":
                return web.json_response({"error": "unknown entity"}, status=422)
            # A well-behaved receiver deduplicates on Idempotency-Key.
            received[request.headers["Idempotency-Key"]] = body["changes"]
            return web.Response(status=204)

        runner, url = await serve_hook(receive)
        context = IntegrationContext(
            integration_id="hook",
            config=WebhookConfig.model_validate({"url": url}),
            mapping=MemoryMapping(),
            http=None,  # type: ignore[arg-type]  # the driver keeps its own connections
            logger=logging.getLogger("tests.contract.webhook"),
        )
        try:
            yield ContractEnv(
                context=context,
                accepted_job=_job("j1", "product:a"),
                rejected_job=_job("j2", "rejected"),
                inject_server_error=lambda: failures.append(503),
                target_state=lambda: orjson.dumps(received, option=orjson.OPT_SORT_KEYS),
            )
        finally:
            for driver in self.opened:
                await driver.close()
            await runner.cleanup()
