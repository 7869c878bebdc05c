"""Full REST sync throughput and peak RSS: sandbox catalogue → pim.snapshots."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import psutil

from bench.bench_webhook import child, environment, free_port


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _broker(me: psutil.Process) -> psutil.Process | None:
    """The embedded broker (a child of this process), to account for its CPU too."""
    for proc in me.children(recursive=True):
        try:
            if "tansu" in proc.name() or any("tansu" in a for a in proc.cmdline()[:1]):
                return proc
        except psutil.Error:
            continue
    return None


def run(
    products: int = 100_000, *, prerender: bool = True, streams: int = 4, window: int = 4
) -> dict[str, Any]:
    """`hub sync akeneo --full --entity product` against a sandbox in its own process.

    The sandbox, the broker and the sync share this machine (and with whatever else runs):
    the CPU seconds of each are reported, with the load average, so a slow run can be told
    apart from a starved one. `prerender` has the sandbox render its catalogue before the
    clock starts, so serving a page costs a copy (the real PIM does that work elsewhere).
    """
    me = psutil.Process()
    with environment() as env:
        port = free_port()
        args = ["sandbox", "akeneo", "serve", "--port", str(port), "--products", str(products)]
        if prerender:
            args.append("--prerender")
        with child(args, env, f"http://127.0.0.1:{port}/api/rest/v1", 600.0) as sandbox:
            env = {
                **env,
                "HUB_INGEST_AKENEO_URL": f"http://127.0.0.1:{port}",
                "HUB_INGEST_AKENEO_CLIENT_ID": "sandbox_client",
                "HUB_INGEST_AKENEO_SECRET": "sandbox_secret",
                "HUB_INGEST_AKENEO_USERNAME": "sandbox_api",
                "HUB_INGEST_AKENEO_PASSWORD": "sandbox_password",
                "HUB_INGEST_SYNC_STREAMS": str(streams),
                "HUB_INGEST_SYNC_WINDOW": str(window),
            }
            server = psutil.Process(sandbox.pid)
            broker = _broker(me)
            server_cpu0 = _cpu_s(server)
            broker_cpu0 = _cpu_s(broker) if broker else 0.0
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            with child(["sync", "akeneo", "--full", "--entity", "product"], env) as proc:
                watched = psutil.Process(proc.pid)
                peak = 0
                sync_cpu = 0.0
                while proc.poll() is None:
                    try:
                        peak = max(peak, watched.memory_info().rss)
                        sync_cpu = _cpu_s(watched)
                    except psutil.NoSuchProcess:
                        break
                    time.sleep(0.05)
                elapsed = time.perf_counter() - started
                server_cpu = _cpu_s(server) - server_cpu0
                broker_cpu = (_cpu_s(broker) - broker_cpu0) if broker else 0.0
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
    return {
        "products": products,
        "streams": streams,
        "window": window,
        "prerendered_sandbox": prerender,
        "seconds": round(elapsed, 1),
        "products_per_s": round(products / elapsed),
        "peak_rss_mb": round(peak / 2**20, 1),
        # Where the time goes: CPU seconds of the sync, the sandbox serving it and the broker.
        "sync_cpu_s": round(sync_cpu, 1),
        "sandbox_cpu_s": round(server_cpu, 1),
        "broker_cpu_s": round(broker_cpu, 1),
        "sync_products_per_cpu_s": round(products / max(sync_cpu, 1e-3)),
        # The share of the two cores the three used: well under 1 means waiting, not working.
        "cores_busy": round((sync_cpu + server_cpu + broker_cpu) / elapsed, 2),
        "cores": os.cpu_count(),
        "load_average_1m_before": round(load_before, 1),
        "load_average_1m_after": round(os.getloadavg()[0], 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("products", type=int, nargs="?", default=100_000)
    parser.add_argument("--streams", type=int, default=4, help="parallel `updated` ranges")
    parser.add_argument("--window", type=int, default=4, help="pages awaiting acks per stream")
    parser.add_argument(
        "--generate", action="store_true", help="sandbox generates pages as served (no prerender)"
    )
    a = parser.parse_args()
    print(
        json.dumps(
            run(a.products, prerender=not a.generate, streams=a.streams, window=a.window),
            indent=2,
        )
    )
