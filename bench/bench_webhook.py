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
import psutil

from pim_hub.devstack import embedded as runtime
from pim_hub.devstack.stack import settings_from_env
from pim_hub.runtime import db
from pim_hub.runtime.kafka import apply_topics
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.sandbox.akeneo.webhooks import SignedWebhook, legacy_webhook
from pim_hub.services.ingest.web import EVENTS_API_PATH

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
    args: list[str],
    env: dict[str, str],
    ready_url: str | None = None,
    ready_timeout_s: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m hub <args>`; waits for ready_url to answer; always stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pim_hub", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if ready_url:
            deadline = time.monotonic() + ready_timeout_s
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


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _server_buckets(metrics_url: str) -> dict[float, float]:
    """Cumulative counts of the receiver's latency histogram (Events API), by upper bound."""
    text = httpx.get(metrics_url, timeout=10).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("pimhub_ingest_webhook_seconds_bucket{") and "events-api" in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def _bucket_pct(cumulative: dict[float, float], p: float) -> float | None:
    """The smallest bucket bound holding a share p of the observations, in ms."""
    total = cumulative.get(float("inf"), 0.0)
    if not total:
        return None
    for le in sorted(cumulative):
        if cumulative[le] >= p * total:
            return round(le * 1000, 1)
    return None


def run(rate: float = 50.0, seconds: float = 30.0, warmup_s: float = 3.0) -> dict[str, Any]:
    """p50/p95/p99/max latency of `hub ingest web` (a separate process) on the real broker.

    The client runs on the same machine, so the figures come with what else was running:
    the load average before and after, and the CPU time of the receiver and of the client
    during the measured window (CPU per request is the figure that does not depend on load).
    """
    catalogue = Catalogue(2000, seed=1)
    me = psutil.Process()
    with environment() as env:
        port = free_port()
        env = {**env, "HUB_INGEST_EVENTS_API_SECRET": SECRET}
        with child(
            # Any answer means it listens (the webhook port serves no health endpoints).
            ["ingest", "web", "--port", str(port)],
            env,
            f"http://127.0.0.1:{port}/metrics",
        ) as proc:
            receiver = psutil.Process(proc.pid)
            url = f"http://127.0.0.1:{port}{EVENTS_API_PATH}"
            asyncio.run(_load(url, rate, _hooks(catalogue, int(rate * warmup_s))))
            hooks = _hooks(catalogue, int(rate * seconds))
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            load_before = os.getloadavg()[0]
            buckets0 = _server_buckets(metrics_url)
            receiver_cpu0, client_cpu0, wall0 = _cpu_s(receiver), _cpu_s(me), time.perf_counter()
            lat = sorted(asyncio.run(_load(url, rate, hooks)))
            wall = time.perf_counter() - wall0
            receiver_cpu = _cpu_s(receiver) - receiver_cpu0
            client_cpu = _cpu_s(me) - client_cpu0
            load_after = os.getloadavg()[0]
            buckets = _server_buckets(metrics_url)
            inside = {le: n - buckets0.get(le, 0.0) for le, n in buckets.items()}
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
        # Time inside the receiver's handler (its own histogram; bucket upper bounds): what
        # the client sees on top of it is queueing for a CPU, in the kernel or in the client.
        "server_p50_le_ms": _bucket_pct(inside, 0.50),
        "server_p99_le_ms": _bucket_pct(inside, 0.99),
        "seconds": round(wall, 1),
        # Share of one core the receiver used, and its CPU cost per request.
        "receiver_cpu_s": round(receiver_cpu, 2),
        "receiver_cpu_share": round(receiver_cpu / wall, 3),
        "receiver_cpu_ms_per_request": round(receiver_cpu * 1000 / len(ms), 2),
        "client_cpu_s": round(client_cpu, 2),
        "cores": os.cpu_count(),
        "load_average_1m_before": round(load_before, 1),
        "load_average_1m_after": round(load_after, 1),
    }


if __name__ == "__main__":
    # python -m bench.bench_webhook [SECONDS] [RATE]
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 50.0
    print(json.dumps(run(rate=rate, seconds=seconds), indent=2))
