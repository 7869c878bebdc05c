"""End to end: Akeneo sandbox → sync/webhooks → mutator → dispatchers → Magento sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from hub import demo
from hub.stack import Stack, local_stack

ROOT = Path(__file__).resolve().parent.parent
SEED = 11
EDIT_PATH = "/bench/edit"
STATE_PATH = "/bench/state"


# ---------------------------------------------------------------- sandboxes in their own processes
def _serve_akeneo(port: int, products: int) -> None:
    """Akeneo sandbox with a bench route that edits products and signs their webhooks."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from sandbox.akeneo import Catalogue, create_app
    from sandbox.akeneo.webhooks import legacy_webhook

    catalogue = Catalogue(products=products, seed=SEED)
    app = create_app(
        catalogue,
        client_id=demo.AKENEO_CREDENTIALS["client_id"],
        secret=demo.AKENEO_CREDENTIALS["secret"],
        username=demo.AKENEO_CREDENTIALS["username"],
        password=demo.AKENEO_CREDENTIALS["password"],
    )

    async def edit(request: Request) -> Response:
        # Flip `enabled` of products start, start+stride, ...: an edit every product can take.
        body = orjson.loads(await request.body())
        out = []
        indexes = range(body["start"], catalogue.next_index, body["stride"])
        for n in list(indexes)[: body["count"]]:
            product = catalogue.product_at(n)
            if product is None:
                continue
            change = catalogue.set_enabled(product["uuid"], not product.get("enabled", True))
            hook = legacy_webhook([change], secret=demo.WEBHOOK_SECRET) if body["sign"] else None
            out.append(
                {
                    "key": f"product:{product['uuid']}",
                    "sku": product["values"]["sku"][0]["data"],
                    "headers": hook.headers if hook else None,
                    "body": hook.body.decode() if hook else None,
                }
            )
        return Response(orjson.dumps(out), media_type="application/json")

    # First, before the sandbox's catch-all route.
    app.router.routes.insert(0, Route(EDIT_PATH, edit, methods=["POST"]))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _serve_magento(port: int) -> None:
    """Magento sandbox with a bench route answering each product's `updated_at`."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from sandbox.magento import MagentoState, SandboxConfig, create_app

    state = MagentoState(SandboxConfig(attributes=demo.ATTRIBUTE_SEEDS))
    app = create_app(state)

    async def inspect(_: Request) -> Response:
        with state.locked():
            body = {
                "updated": {sku: p.updated_at for sku, p in state.products.items()},
                "requests": state.stats.total,
            }
        return Response(orjson.dumps(body), media_type="application/json")

    app.router.routes.insert(0, Route(STATE_PATH, inspect, methods=["GET"]))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@contextlib.contextmanager
def _child(args: list[str], ready: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_e2e", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[0]} sandbox exited; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(ready, timeout=2)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} sandbox did not start; see {log}")
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------- observation
class RssWatch:
    """Samples the resident memory of named processes (and their children) in a thread."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.peak: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for name, pid in list(self.pids.items()):
                with contextlib.suppress(psutil.Error):
                    rss = psutil.Process(pid).memory_info().rss
                    self.peak[name] = max(self.peak[name], rss)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def report(self) -> dict[str, float]:
        return {name: round(rss / 2**20, 1) for name, rss in sorted(self.peak.items())}


def _magento(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(url + STATE_PATH, timeout=30).json()
    return body


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
    return out


def _wait_settled(
    stack: Stack, magento_url: str, want: int, timeout: float, interval: float = 1.0
) -> float:
    """Wait until every job has a final status and Magento holds `want` products."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        stack.supervisor.check()
        count = len(_magento(magento_url)["updated"])
        if count >= want:
            jobs = demo.topic_count(stack.settings, demo.job_topics())
            counts = demo.delivery_counts(stack)
            final = sum(counts.get(s, 0) for s in demo.TERMINAL)
            if final >= jobs:
                return time.monotonic()
            last = f"{final}/{jobs} jobs final"
        else:
            last = f"{count}/{want} products in Magento"
        time.sleep(interval)
    raise demo.StageFailed(f"not settled in {timeout:.0f} s ({last})")


def _profile(pids: dict[str, int], seconds: int, out_dir: Path) -> dict[str, list[str]]:
    """py-spy for `seconds` on each process; the top self-time frames of each."""
    spy = Path(sys.executable).parent / "py-spy"
    procs = {}
    for name, pid in pids.items():
        out = out_dir / f"{name}.txt"
        procs[name] = (
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(seconds),
                    "-f",
                    "raw",
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            out,
        )
    top: dict[str, list[str]] = {}
    for name, (proc, out) in procs.items():
        proc.wait(seconds + 60)
        top[name] = _top_frames(out)
    return top


def _top_frames(path: Path, n: int = 6) -> list[str]:
    """Share of samples per leaf frame and per hub/driver frame seen anywhere in the stack."""
    leaf: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ["no profile (py-spy could not attach)"]
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        # "function (path/file.py:line)" -> "function (file.py)": lines split one function.
        func, _, where = frames[-1].partition(" (")
        leaf[f"{func} ({where.rsplit('/', 1)[-1].split(':')[0]})"] += samples
    if not total:
        return ["no samples"]
    return [f"{100 * c / total:.0f}% {f}" for f, c in leaf.most_common(n)]


# ---------------------------------------------------------------- the benchmark
def run(
    products: int = 3_000,
    live_rate: float = 50.0,
    live_seconds: int = 60,
    profile_s: int = 20,
) -> dict[str, Any]:
    """Full catalogue, 1% re-sync and a live webhook stream through the whole hub."""
    work = Path(tempfile.mkdtemp(prefix="pimhub-bench-e2e-"))
    akeneo_port, magento_port = demo.free_port(), demo.free_port()
    akeneo_url = f"http://127.0.0.1:{akeneo_port}"
    magento_url = f"http://127.0.0.1:{magento_port}"
    result: dict[str, Any] = {"products": products}
    with (
        _child(["magento", str(magento_port)], magento_url + STATE_PATH, work / "magento.log") as m,
        _child(
            ["akeneo", str(akeneo_port), str(products)],
            akeneo_url + "/api/rest/v1/channels",
            work / "akeneo.log",
        ) as a,
        local_stack(
            f"pimhub_bench_e2e_{os.getpid()}",
            log_dir=work,
            extra_env=demo.stack_env({**demo.ingest_env(akeneo_url), "HUB_LOG_LEVEL": "WARNING"}),
        ) as stack,
        RssWatch() as rss,
    ):
        rss.watch("akeneo-sandbox", a.pid)
        rss.watch("magento-sandbox", m.pid)
        from sandbox.akeneo import Catalogue

        want = len(demo.expected_skus(Catalogue(products=products, seed=SEED)))
        hub = demo.start_services(stack, magento_url)
        for name, pid in hub.pids().items():
            rss.watch(name, pid)
        time.sleep(3)  # consumer groups join before the load starts

        # (4) full catalogue
        pids = {**hub.pids(), "akeneo-sandbox": a.pid, "magento-sandbox": m.pid}
        cpu0 = _cpu(pids)
        started = time.monotonic()
        sync = subprocess.Popen(
            [sys.executable, "-m", "hub", "sync", "akeneo", "--full"],
            env={**os.environ, **stack.env, **demo.ingest_env(akeneo_url)},
            cwd=ROOT,
            stdout=(work / "sync-full.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        rss.watch("sync", sync.pid)
        profile: dict[str, list[str]] = {}
        if profile_s:
            time.sleep(5)
            profile = _profile(
                {
                    k: v
                    for k, v in hub.pids().items()
                    if k in ("mutator", "dispatcher-magento2-immediate")
                },
                profile_s,
                work,
            )
        if sync.wait(1800) != 0:
            raise demo.StageFailed(f"the full sync failed; see {work / 'sync-full.log'}")
        sync_s = time.monotonic() - started
        done = _wait_settled(stack, magento_url, want, timeout=1800, interval=2.0)
        full_s = done - started
        cpu1 = _cpu(pids)
        counts = demo.delivery_counts(stack)
        result.update(
            {
                "full_magento_products": want,
                "full_seconds": round(full_s, 1),
                "full_products_per_s": round(products / full_s, 1),
                "full_vs_target_300_per_s": round(products / full_s / 300, 3),
                "full_sync_seconds": round(sync_s, 1),
                "full_sync_share": round(sync_s / full_s, 3),
                "full_jobs": demo.topic_count(stack.settings, demo.job_topics()),
                "full_retried_jobs": counts["retried"],
                "full_dead_jobs": counts.get("dead", 0),
                "full_magento_requests": _magento(magento_url)["requests"],
                "full_cpu_s": {k: round(cpu1.get(k, 0) - cpu0.get(k, 0), 1) for k in cpu1},
            }
        )
        if profile:
            result["full_profile_top_frames"] = profile

        # (5) re-sync with 1% changed
        before = _magento(magento_url)["updated"]
        changed = httpx.post(
            akeneo_url + EDIT_PATH,
            json={"start": 0, "stride": 100, "count": products // 100, "sign": False},
            timeout=60,
        ).json()
        time.sleep(1.1)  # Magento's updated_at has one-second resolution
        started = time.monotonic()
        delta_s = demo.run_sync(stack, demo.ingest_env(akeneo_url), "delta", work)
        changed_skus = {c["sku"] for c in changed}

        def written() -> set[str]:
            now = _magento(magento_url)["updated"]
            return {sku for sku, at in now.items() if before.get(sku) != at}

        deadline = time.monotonic() + 300
        while not changed_skus <= written() and time.monotonic() < deadline:
            time.sleep(0.5)
        resync_s = time.monotonic() - started
        _wait_settled(stack, magento_url, want, timeout=120)
        touched = written()
        result.update(
            {
                "resync_changed": len(changed_skus),
                "resync_seconds": round(resync_s, 1),
                "resync_vs_target_60s": round(resync_s / 60, 3),
                "resync_sync_seconds": round(delta_s, 1),
                "resync_written_in_magento": len(touched),
                "resync_only_changed_written": touched == changed_skus,
                "resync_unchanged_written": len(touched - changed_skus),
            }
        )

        # (6) live stream of signed webhooks
        count = int(live_rate * live_seconds)
        hooks = httpx.post(
            akeneo_url + EDIT_PATH,
            json={"start": 50, "stride": max(1, products // count), "count": count, "sign": True},
            timeout=120,
        ).json()
        sent, statuses = asyncio.run(_stream(hub.webhook_url, hooks, live_rate))
        since = datetime.fromtimestamp(min(sent.values()) - 1, UTC)
        keys = list(sent)
        delivered: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while len(delivered) < len(keys) and time.monotonic() < deadline:
            rows = stack.query(
                "SELECT entity_key, min(occurred_at) AS at FROM deliveries "
                "WHERE entity_key = ANY(%s) AND status IN ('delivered', 'skipped') "
                "AND occurred_at > %s GROUP BY entity_key",
                keys,
                since,
            )
            delivered = {r["entity_key"]: r["at"].timestamp() for r in rows}
            time.sleep(1)
        lat = sorted(delivered[k] - sent[k] for k in delivered)
        result.update(
            {
                "live_updates": len(keys),
                "live_rate_per_s": live_rate,
                "live_seconds": live_seconds,
                "live_http_statuses": dict(Counter(statuses)),
                "live_delivered": len(delivered),
                "live_lost": len(keys) - len(delivered),
                "live_p50_ms": round(1000 * statistics.median(lat)) if lat else None,
                "live_p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))]) if lat else None,
                "live_max_ms": round(1000 * lat[-1]) if lat else None,
                "live_p99_vs_target_2s": round(lat[int(0.99 * (len(lat) - 1))] / 2, 3)
                if lat
                else None,
            }
        )
        result["peak_rss_mb"] = rss.report()
        result["peak_rss_max_vs_target_300mb"] = round(max(rss.peak.values()) / 2**20 / 300, 3)
        result["load_average_1m"] = round(psutil.getloadavg()[0], 1)
        result["logs"] = str(work)
    return result


async def _stream(
    url: str, hooks: list[dict[str, Any]], rate: float
) -> tuple[dict[str, float], list[str]]:
    """Post one signed webhook every 1/rate seconds (open loop: a slow answer does not slow us)."""
    sent: dict[str, float] = {}
    statuses: list[str] = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=30) as client:

        async def one(hook: dict[str, Any]) -> None:
            sent[hook["key"]] = time.time()
            # Akeneo retries a failed delivery; so does the load generator, once.
            for attempt in (1, 2):
                try:
                    resp = await client.post(
                        url, content=hook["body"].encode(), headers=hook["headers"]
                    )
                    statuses.append(str(resp.status_code))
                    return
                except httpx.TransportError as exc:
                    statuses.append(type(exc).__name__)
                    if attempt == 2:
                        return

        tasks = []
        start = time.perf_counter()
        for i, hook in enumerate(hooks):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(hook)))
        await asyncio.gather(*tasks)
    return sent, statuses


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "akeneo":
        _serve_akeneo(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "magento":
        _serve_magento(int(sys.argv[2]))
    else:
        size = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000
        print(json.dumps(run(size), indent=2, default=str))
