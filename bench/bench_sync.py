"""Full REST sync throughput and peak RSS: sandbox catalogue → pim.snapshots."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import psutil

from bench.bench_webhook import child, environment, free_port


def run(products: int = 100_000) -> dict[str, Any]:
    """`hub sync akeneo --full --entity product` against a sandbox in its own process."""
    with environment() as env:
        port = free_port()
        with child(
            ["sandbox", "akeneo", "serve", "--port", str(port), "--products", str(products)],
            env,
            f"http://127.0.0.1:{port}/api/rest/v1",
        ) as sandbox:
            env = {
                **env,
                "HUB_INGEST_AKENEO_URL": f"http://127.0.0.1:{port}",
                "HUB_INGEST_AKENEO_CLIENT_ID": "sandbox_client",
                "HUB_INGEST_AKENEO_SECRET": "sandbox_secret",
                "HUB_INGEST_AKENEO_USERNAME": "sandbox_api",
                "HUB_INGEST_AKENEO_PASSWORD": "sandbox_password",
            }
            started = time.perf_counter()
            with child(["sync", "akeneo", "--full", "--entity", "product"], env) as proc:
                watched = psutil.Process(proc.pid)
                server = psutil.Process(sandbox.pid)
                server_cpu0 = sum(server.cpu_times()[:2])
                peak = 0
                sync_cpu = 0.0
                while proc.poll() is None:
                    try:
                        peak = max(peak, watched.memory_info().rss)
                        sync_cpu = sum(watched.cpu_times()[:2])
                    except psutil.NoSuchProcess:
                        break
                    time.sleep(0.05)
                server_cpu = sum(server.cpu_times()[:2]) - server_cpu0
                elapsed = time.perf_counter() - started
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
    return {
        "products": products,
        "seconds": round(elapsed, 1),
        "products_per_s": round(products / elapsed),
        "peak_rss_mb": round(peak / 2**20, 1),
        # Where the time goes: CPU seconds of the sync process and of the sandbox serving it.
        "sync_cpu_s": round(sync_cpu, 1),
        "sandbox_cpu_s": round(server_cpu, 1),
        "sync_products_per_cpu_s": round(products / max(sync_cpu, 1e-3)),
        "load_average_1m": round(psutil.getloadavg()[0], 1),
    }


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(json.dumps(run(count), indent=2))
