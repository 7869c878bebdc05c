"""Throttling on the real broker and PostgreSQL: a webhook target that answers 429.

The target takes at most two requests at once and answers 429 (with a short Retry-After)
to any more. The dispatcher lowers the integration's concurrency to what the target takes
(AIMD, `pimhub_dispatcher_concurrency_limit`) and puts the answered jobs back in their lane:
every job is delivered, none spends an attempt, none goes to a retry tier or dies, and the
circuit never opens (the target is up).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from pim_hub.runtime.settings import Settings
from pim_hub.services.dispatcher.core.breaker import BreakerPolicy
from tests.hook_server import serve_hook
from tests.integration.test_dispatcher import dispatching
from tests.integration.test_dispatcher_helpers import (
    WebhookTestDriver,
    enabled_integration,
    final_statuses,
    lane_sample,
    numbered_jobs,
    produce_jobs,
    status_watcher,
)

pytestmark = pytest.mark.integration

CAPACITY = 2  # requests the target serves at once


@dataclass
class Target:
    """What the throttling target saw."""

    url: str = ""
    in_flight: int = 0
    served: int = 0
    throttled: int = 0
    peak: int = 0
    keys: list[str] = field(default_factory=list)


@pytest.fixture
def throttling_target() -> Iterator[Target]:
    """A webhook receiver serving CAPACITY requests at once, 429 (Retry-After 0.2) beyond."""
    target = Target()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handler(request: web.Request) -> web.StreamResponse:
        if target.in_flight >= CAPACITY:
            target.throttled += 1
            return web.Response(status=429, headers={"Retry-After": "0.2"})
        target.in_flight += 1
        target.peak = max(target.peak, target.in_flight)
        try:
            await asyncio.sleep(0.03)
            body = await request.json()
            target.keys.append(body["entity"]["key"] if "entity" in body else "")
            target.served += 1
            return web.Response(status=200)
        finally:
            target.in_flight -= 1

    async def start() -> web.AppRunner:
        runner, target.url = await serve_hook(handler)
        ready.set()
        return runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        holder["runner"] = loop.run_until_complete(start())
        loop.run_forever()

    holder: dict[str, web.AppRunner] = {}
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield target
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_throttling_target_gets_fewer_calls_at_once_and_no_job_fails(
    hub_settings: Settings, database_url: str, unique: str, throttling_target: Target
) -> None:
    driver: type[WebhookTestDriver] = type(
        f"Hook_{unique}", (WebhookTestDriver,), {"key": f"hook{unique}"}
    )
    integ = enabled_integration(database_url, driver, unique, {"url": throttling_target.url})
    n = 60
    jobs = numbered_jobs(integ, driver.key, unique, n)
    watch = status_watcher(hub_settings, integ)
    lowest = float("inf")
    # Threshold 3: were a 429 still an outage, this target would open the circuit at once.
    policy = BreakerPolicy(threshold=3, probe_min_s=0.2, probe_max_s=1.0)
    with dispatching(hub_settings, driver, "low", max_in_flight=8, max_attempts=1, breaker=policy):
        produce_jobs(hub_settings, jobs)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            limit = lane_sample("pimhub_dispatcher_concurrency_limit", driver.key, integ)
            if limit is not None:
                lowest = min(lowest, limit)
            assert lane_sample("pimhub_dispatcher_circuit_state", driver.key, integ) in (None, 0.0)
            if throttling_target.served >= n:
                break
            time.sleep(0.02)
        statuses = watch.wait(lambda s: len(final_statuses(s)) >= n, 60, "every job's status")
        held = lane_sample("pimhub_dispatcher_held_total", driver.key, integ, reason="throttle")
    watch.close()
    target = throttling_target
    assert target.throttled > 0, "the target never throttled: the test proves nothing"
    # max_attempts 1: a 429 spent as an attempt would have been dead at once.
    assert set(final_statuses(statuses).values()) == {"delivered"}
    assert not [s for s in statuses if s["status"] != "delivered"]
    assert target.served == n and target.peak <= CAPACITY
    # The limit came down from 8 to what the target takes; the answered jobs waited.
    assert lowest <= CAPACITY, lowest
    assert held is not None and held >= 1
    # Adaptive, not job by job: most requests were served, not refused.
    assert target.throttled < n / 2, (target.throttled, n)
