"""Fault drill: a webhook target down, then back; how fast the backlog drains, what it cost.

Run: .venv/bin/python -m bench.bench_fault_drill [phase_s] [jobs]   (own broker and database)

`jobs` jobs (distinct products) go to a webhook integration whose receiver refuses
connections for `phase_s` seconds, then answers 503 for `phase_s`, then 429 for `phase_s`,
then 200. Measured from the receiver's return: the time until every job is delivered
(`drain_s`), and during the outage the attempts the dispatcher made (`outage_attempts`,
calls of the driver) and the jobs it sent to retry tiers or dead letters. The same drill runs
twice in one run, on the same machine state: with the circuit breaker (the defaults) and
with it turned off (`HUB_DISPATCHER_BREAKER_THRESHOLD=0`: the retry tiers alone, as before).
Both use the default retry tiers (30 s, 300 s, 1800 s) and attempts (4).
`drain_vs_baseline` is the breaker's drain time over the baseline's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
import uuid
from typing import Any, ClassVar

from aiohttp import web

from pim_hub.devstack import embedded as runtime
from pim_hub.devstack.fixtures import change, job_record, version
from pim_hub.drivers.base import DeliveryResult, IntegrationContext
from pim_hub.drivers.discovery import discover
from pim_hub.drivers.webhook.driver import WebhookDriver
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime import db
from pim_hub.runtime.kafka import apply_topics, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.events import Job
from pim_hub.schemas.serde import Serde
from pim_hub.services.dispatcher.app import Dispatcher, run_in_thread
from pim_hub.services.dispatcher.core.breaker import BreakerPolicy
from pim_hub.services.dispatcher.settings import DispatcherOptions


class Receiver:
    """A webhook receiver in a thread of its own: down (refusing connections), 503, 429, up."""

    def __init__(self) -> None:
        self.mode = "refuse"
        self.delivered: set[str] = set()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._setup())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.mode == "503":
            return web.Response(status=503)
        if self.mode == "429":
            return web.Response(status=429, headers={"Retry-After": "1"})
        self.delivered.add(request.headers.get("Idempotency-Key", ""))
        return web.Response(status=200)

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        # A free port, closed again: the drill starts with the receiver refusing connections.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    async def _listen(self, on: bool) -> None:
        assert self._runner is not None
        if on and self._site is None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()
        elif not on and self._site is not None:
            await self._site.stop()
            self._site = None

    def set(self, mode: str) -> None:
        """refuse, 503, 429 or up."""
        self._call(self._listen(mode != "refuse"))
        self.mode = mode

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._listen(False))
            if self._runner is not None:
                self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)


class CountingWebhook(WebhookDriver):
    """The webhook driver, counting its calls (attempts, probes included)."""

    key: ClassVar[str] = "webhook_drill"
    calls: ClassVar[list[float]] = []

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Count, then POST."""
        type(self).calls.append(time.monotonic())
        return await super().handle(job, context)


def drill(
    settings: Settings, url: str, phase_s: float, n: int, breaker: BreakerPolicy
) -> dict[str, Any]:
    """One drill on a fresh integration; its figures."""
    integ = f"drill-{uuid.uuid4().hex[:8]}"
    receiver = Receiver()
    catalogue = discover()
    catalogue.drivers[CountingWebhook.key] = CountingWebhook
    upsert_integration(
        url,
        catalogue,
        Integration(
            integ,
            integ,
            CountingWebhook.key,
            True,
            {"url": f"http://127.0.0.1:{receiver.port}/hook", "timeout_s": 5},
            None,
            {},
        ),
    )
    CountingWebhook.calls = []
    options = DispatcherOptions.from_settings(settings, breaker=breaker)
    disp = Dispatcher(settings, CountingWebhook.key, "normal", catalogue, options)
    stop = run_in_thread(disp)
    jobs = [
        job_record(
            integ,
            CountingWebhook.key,
            "normal",
            f"product:{integ}-{i}",
            [change("n", i)],
            version(i),
        )
        for i in range(n)
    ]
    serde, producer = Serde(), make_producer(settings)
    try:
        for rec in jobs:
            producer.produce(
                topics.JOBS_NORMAL,
                serde.encode("Job", rec, topic=topics.JOBS_NORMAL),
                key=f"{integ}|{rec['mutation']['entity_key']}",
            )
        assert producer.flush(30) == 0
        for mode in ("refuse", "503", "429"):
            receiver.set(mode)
            time.sleep(phase_s)
        outage_attempts = len(CountingWebhook.calls)
        outage = dict(disp.stats.by_status)
        receiver.set("up")
        back = time.monotonic()
        deadline = back + 3600
        while len(receiver.delivered) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        drain = time.monotonic() - back
    finally:
        stop()
        receiver.close()
    return {
        "drain_s": round(drain, 2),
        "outage_attempts": outage_attempts,
        "outage_retrying": outage.get("retrying", 0),
        "dead": disp.stats.by_status.get("dead", 0),
        "delivered": len(receiver.delivered),
    }


def run(phase_s: float = 60.0, jobs: int = 200) -> dict[str, Any]:
    """The drill with the breaker and without, on an embedded broker and database."""
    with runtime.embedded_runtime() as rt:
        name = f"bench_drill_{uuid.uuid4().hex[:8]}"
        url = runtime.create_database(rt.database.url, name)
        try:
            db.migrate(url)
            settings = Settings(kafka_bootstrap=rt.broker.bootstrap, database_url=url)
            apply_topics(settings)
            with_breaker = drill(settings, url, phase_s, jobs, BreakerPolicy())
            baseline = drill(settings, url, phase_s, jobs, BreakerPolicy(threshold=0))
        finally:
            runtime.drop_database(rt.database.url, name)
    return {
        "jobs": jobs,
        "outage_s": 3 * phase_s,
        "breaker_drain_s": with_breaker["drain_s"],
        "baseline_drain_s": baseline["drain_s"],
        "drain_vs_baseline": round(with_breaker["drain_s"] / max(baseline["drain_s"], 1e-3), 4),
        "breaker_outage_attempts": with_breaker["outage_attempts"],
        "baseline_outage_attempts": baseline["outage_attempts"],
        "breaker_outage_retrying": with_breaker["outage_retrying"],
        "baseline_outage_retrying": baseline["outage_retrying"],
        "breaker_dead": with_breaker["dead"],
        "baseline_dead": baseline["dead"],
        "breaker_delivered": with_breaker["delivered"],
        "baseline_delivered": baseline["delivered"],
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    print(
        json.dumps(
            run(float(args[0]) if args else 60.0, int(args[1]) if len(args) > 1 else 200),
            indent=2,
        )
    )
