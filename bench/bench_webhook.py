"""Webhook receiver latency: signed Events API requests of 10 events at a steady rate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from hub import db, runtime
from hub.kafka import apply_topics
from hub.stack import settings_from_env
from sandbox.akeneo.catalogue import Catalogue
from sandbox.akeneo.webhooks import SignedWebhook, legacy_webhook
from services.ingest.web import EVENTS_API_PATH

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def environment() -> Iterator[dict[str, str]]:
    """HUB_* env of a broker and a migrated database (embedded unless given)."""
    with runtime.embedded_runtime() as rt:
        name = f"pimhub_bench_{os.getpid()}"
        url = runtime.create_database(rt.database.url, name)
        try:
            db.migrate(url)
            env = {
                "HUB_KAFKA_BOOTSTRAP": rt.broker.bootstrap,
                "HUB_DATABASE_URL": url,
                "HUB_LOG_LEVEL": "WARNING",
            }
            apply_topics(settings_from_env(env))
            yield env
        finally:
            runtime.drop_database(rt.database.url, name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def child(
    args: list[str], env: dict[str, str], ready_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m hub <args>`; waits for ready_url to answer; always stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if ready_url:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{args} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                try:
                    httpx.get(ready_url, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


SECRET = "bench-secret"  # noqa: S105 (a benchmark fixture)


def _hooks(catalogue: Catalogue, count: int) -> list[SignedWebhook]:
    """Signed requests of 10 product events each, built before the clock starts."""
    hooks = []
    n = 0
    for _ in range(count):
        changes = []
        for _ in range(10):
            uuid = catalogue.product_uuid(n % catalogue.base_count)
            n += 1
            changes.append(catalogue.set_enabled(uuid, n % 2 == 0))
        hooks.append(legacy_webhook(changes, secret=SECRET))
    return hooks


async def _load(url: str, rate: float, hooks: list[SignedWebhook]) -> list[float]:
    latencies: list[float] = []
    statuses: list[int] = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=256)) as client:

        async def one(hook: SignedWebhook) -> None:
            started = time.perf_counter()
            resp = await client.post(url, content=hook.body, headers=hook.headers, timeout=10)
            latencies.append(time.perf_counter() - started)
            statuses.append(resp.status_code)

        tasks = []
        start = time.perf_counter()
        for i, hook in enumerate(hooks):
            # Open-loop arrivals: a slow answer does not slow the sender down.
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(hook)))
        await asyncio.gather(*tasks)
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} requests failed: {sorted(set(bad))}")
    return latencies


def run(rate: float = 50.0, seconds: float = 30.0, warmup_s: float = 3.0) -> dict[str, Any]:
    """p50/p95/p99/max latency of `hub ingest web` (a separate process) on the real broker."""
    catalogue = Catalogue(2000, seed=1)
    with environment() as env:
        port = free_port()
        env = {**env, "HUB_INGEST_EVENTS_API_SECRET": SECRET}
        with child(["ingest", "web", "--port", str(port)], env, f"http://127.0.0.1:{port}/healthz"):
            url = f"http://127.0.0.1:{port}{EVENTS_API_PATH}"
            asyncio.run(_load(url, rate, _hooks(catalogue, int(rate * warmup_s))))
            hooks = _hooks(catalogue, int(rate * seconds))
            lat = sorted(asyncio.run(_load(url, rate, hooks)))
    ms = [x * 1000 for x in lat]

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p * len(ms)))], 2)

    return {
        "requests": len(ms),
        "events": len(ms) * 10,
        "rate_req_per_s": rate,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    print(json.dumps(run(seconds=seconds), indent=2))
