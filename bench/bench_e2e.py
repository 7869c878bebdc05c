"""End to end: Akeneo sandbox → sync/webhooks → mutator → dispatchers → Magento sandbox."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiohttp
import httpx
import orjson
import psutil
from confluent_kafka import Message

from bench import broker_metrics, reference
from pim_hub.devstack import demo
from pim_hub.devstack.stack import Stack, local_stack
from pim_hub.runtime.logread import (
    ephemeral_consumer,
    log_bounds,
    partitions_of,
    scan,
    timestamp_ms,
)
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde

ROOT = Path(__file__).resolve().parent.parent
SEED = 11
EDIT_PATH = "/bench/edit"
STATE_PATH = "/bench/state"
T = TypeVar("T")


# ---------------------------------------------------------------- sandboxes in their own processes
def _serve_akeneo(port: int, products: int) -> None:
    """Akeneo sandbox with a bench route that edits products and signs their webhooks."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from pim_hub.sandbox.akeneo import Catalogue, create_app
    from pim_hub.sandbox.akeneo.webhooks import legacy_webhook

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
        # With `skus`, only those products (the load-plus-live case edits products the load
        # has delivered already); with `field` "name", an edit of the `normal` lane.
        body = orjson.loads(await request.body())
        out: list[dict[str, Any]] = []
        wanted = set(body.get("skus") or ())
        if wanted:
            # The catalogue's SKUs are SKU-<index>; the models' codes (configurables) are not.
            indexes: Any = iter(
                sorted(int(sku[4:]) for sku in wanted if re.fullmatch(r"SKU-\d{7}", sku))
            )
        else:
            indexes = iter(range(body["start"], catalogue.next_index, body["stride"]))
        for n in indexes:
            if len(out) >= body["count"]:
                break
            product = catalogue.product_at(n)
            if product is None:
                continue
            if body.get("field") == "name" and product["values"].get("name"):
                renamed = [{**v, "data": f"{v['data'][:200]} ·"} for v in product["values"]["name"]]
                change = catalogue.update_product(product["uuid"], values={"name": renamed})
            else:
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

    from pim_hub.sandbox.magento import MagentoState, SandboxConfig, create_app

    state = MagentoState(SandboxConfig(attributes=demo.ATTRIBUTE_SEEDS))
    app = create_app(state)

    async def inspect(request: Request) -> Response:
        # ?count=1: only the number of products (the settle check polls it often).
        with state.locked():
            body: dict[str, Any] = {"count": len(state.products), "requests": state.stats.total}
            if not request.query_params.get("count"):
                body["updated"] = {sku: p.updated_at for sku, p in state.products.items()}
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


def _magento(url: str, count_only: bool = False) -> dict[str, Any]:
    params = {"count": "1"} if count_only else None
    body: dict[str, Any] = httpx.get(url + STATE_PATH, params=params, timeout=30).json()
    return body


#: CPU figures that are not the hub's: the simulators stand in for Akeneo and Magento, and
#: PostgreSQL is the hub's database but not the hub (its share is a floor anyway).
NOT_HUB_CPU = frozenset({"akeneo-sandbox", "magento-sandbox", "postgres", "machine_busy"})


def cpu_per_product(cpu_s: dict[str, float], products: int, reference_s: float) -> dict[str, float]:
    """CPU seconds per delivered product: the hub's services and the broker together, the
    broker alone, each absolute and in units of the reference workload (bench.reference)."""
    hub = sum(v for k, v in cpu_s.items() if k not in NOT_HUB_CPU)
    broker = cpu_s.get("broker", 0.0)
    per = max(products, 1)
    return {
        "hub_cpu_ms_per_product": round(1000 * hub / per, 3),
        "broker_cpu_ms_per_product": round(1000 * broker / per, 3),
        "hub_cpu_per_product_in_references": round(hub / per / reference_s, 4),
        "broker_cpu_per_product_in_references": round(broker / per / reference_s, 4),
    }


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
    # The broker and PostgreSQL share the cores too (a PostgreSQL backend that has ended
    # takes its CPU time with it: that share is a floor).
    shared = {"tansu": "broker", "postgres": "postgres"}
    out.update(dict.fromkeys(shared.values(), 0.0))
    for proc in psutil.process_iter(["name", "cpu_times"]):
        name, times = proc.info["name"] or "", proc.info["cpu_times"]
        for prefix, label in shared.items():
            if name.startswith(prefix) and times:
                out[label] += times.user + times.system
    machine = psutil.cpu_times()
    out["machine_busy"] = sum(machine) - machine.idle - machine.iowait
    return out


def _wait_settled(
    stack: Stack,
    magento_url: str,
    want: int,
    timeout: float,
    interval: float = 0.25,
    running: subprocess.Popen[bytes] | None = None,
) -> float:
    """Wait until every job has a final status and Magento holds `want` products.

    Returns when the last job became final (epoch seconds, from the deliveries themselves),
    so how often this polls does not change the figure. With `running` (the sync), jobs are
    not counted before it has exited: more are still coming.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        stack.supervisor.check()
        if running is not None and running.poll() is None:
            last = "sync still running"
        elif (count := _magento(magento_url, count_only=True)["count"]) < want:
            last = f"{count}/{want} products in Magento"
        else:
            jobs = demo.topic_count(stack.settings, demo.job_topics())
            counts = demo.delivery_counts(stack)
            final = sum(counts.get(s, 0) for s in demo.TERMINAL)
            if final >= jobs:
                rows = stack.query("SELECT max(occurred_at) AS at FROM deliveries")
                at: datetime = rows[0]["at"]
                return at.timestamp()
            last = f"{final}/{jobs} jobs final"
        time.sleep(interval)
    raise demo.StageFailed(f"not settled in {timeout:.0f} s ({last})")


#: the processes `--profile` samples during the full load
PROFILED = (
    "mutator",
    "fanout",
    "dispatcher-magento2-immediate",
    "dispatcher-magento2-normal",
    "dispatcher-magento2-low",
    "magento-sandbox",
)


def _ends(stack: Stack, names: list[str]) -> dict[tuple[str, int], int]:
    """The current log end of every partition of these topics."""
    consumer = ephemeral_consumer(stack.settings, "bench-ends")
    try:
        tps = [(name, p) for name in names for p in partitions_of(consumer, name)]
        return {tp: end for tp, (_, end) in log_bounds(consumer, tps).items()}
    finally:
        consumer.close()


def _since(stack: Stack, starts: dict[tuple[str, int], int]) -> Iterator[Message]:
    """Every record written to these partitions after `starts` (their ends at some moment)."""
    consumer = ephemeral_consumer(stack.settings, "bench-read")
    try:
        ends = log_bounds(consumer, list(starts))
        yield from scan(consumer, {tp: (starts[tp], end) for tp, (_, end) in ends.items()})
    finally:
        consumer.close()


#: the topics a full load passes through, in order
FULL_STAGES = [
    topics.SNAPSHOTS_BULK,
    topics.SNAPSHOTS,
    topics.MUTATIONS,
    *demo.job_topics(),
    topics.DELIVERY_STATUS,
]


def _stage_done(
    stack: Stack, starts: dict[tuple[str, int], int], started: float
) -> dict[str, float]:
    """Seconds from the start of the load to the last record of each stage (its end)."""
    last: dict[str, float] = {}
    for msg in _since(stack, starts):
        stamp = timestamp_ms(msg)
        topic = str(msg.topic())
        name = "hub.jobs" if topic.startswith("hub.jobs.") else topic
        if stamp is not None:
            last[name] = max(last.get(name, 0.0), stamp / 1000 - started)
    return {name: round(at, 1) for name, at in last.items()}


def _metric_families(port: int) -> Iterator[Any]:
    """The metric families a service exposes on `port` (raises httpx.HTTPError)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    yield from text_string_to_metric_families(text)


#: Each service's metric families, read once (`_scrape`); a service that did not answer is
#: left out.
Scraped = dict[str, list[Any]]


def _scrape(hub: demo.Hub) -> Scraped:
    """Every service's /metrics, read once for all the figures taken from them at a moment."""
    out: Scraped = {}
    for name, port in sorted(hub.metrics_ports.items()):
        with contextlib.suppress(httpx.HTTPError):
            out[name] = list(_metric_families(port))
    return out


def _batch_sizes(scraped: Scraped) -> dict[str, float]:
    """Mean records per batch so far: each mutator agent's, and jobs per `handle_batch` call
    of each dispatcher (from the services' /metrics)."""
    sums: defaultdict[str, float] = defaultdict(float)
    for name, families in scraped.items():
        for family in families:
            for sample in family.samples:
                if sample.name == "pimhub_mutator_batch_records_total":
                    sums[f"{sample.labels['agent']} records"] += sample.value
                elif sample.name == "pimhub_mutator_batches_total":
                    sums[f"{sample.labels['agent']} batches"] += sample.value
                elif sample.name == "pimhub_mutator_bulk_yields_total":
                    sums["bulk yields"] += sample.value
                elif sample.name == "pimhub_mutator_in_flight_waits_total":
                    sums["in-flight waits"] += sample.value
                elif sample.name == "pimhub_dispatcher_jobs_total":
                    sums[f"{name} records"] += sample.value
                elif sample.name == "pimhub_dispatcher_delivery_seconds_count":
                    sums[f"{name} batches"] += sample.value
    out: dict[str, float] = {
        "bulk_yields": sums["bulk yields"],
        # Snapshots that waited for another batch of the same entity (mutator precedence).
        "in_flight_waits": sums["in-flight waits"],
    }
    for key, batches in sums.items():
        if key.endswith(" batches") and batches:
            who = key.removesuffix(" batches")
            out[f"{who}_per_batch"] = round(sums[f"{who} records"] / batches, 1)
            out[f"{who}_batches"] = batches
    return out


def _held(scraped: Scraped) -> dict[str, int]:
    """Times jobs were held back so far without spending an attempt, by lane and reason (order: an
    older job of the entity not finished; circuit; throttle; guard; parked), and the jobs
    whose order wait was given up (`<lane> order given up`)."""
    held: Counter[str] = Counter()
    for families in scraped.values():
        for family in families:
            for sample in family.samples:
                lane = sample.labels.get("priority", "")
                if sample.name == "pimhub_dispatcher_held_total":
                    held[f"{lane} {sample.labels['reason']}"] += int(sample.value)
                elif sample.name == "pimhub_dispatcher_order_given_up_total":
                    held[f"{lane} order given up"] += int(sample.value)
    return dict(sorted(held.items()))


def _retry_reasons(stack: Stack, starts: dict[tuple[str, int], int], n: int = 12) -> list[str]:
    """Why jobs were retried: the most common (entity type, error) of `retrying` statuses."""
    serde = Serde(stack.settings.registry_config())
    reasons: Counter[str] = Counter()
    for msg in _since(stack, starts):
        status = serde.decode("DeliveryStatus", msg.value(), topic=topics.DELIVERY_STATUS)
        if status["status"] != "retrying":
            continue
        etype = str(status["entity_key"]).split(":", 1)[0]
        # Names and codes vary per entity: keep the message's wording only.
        words = re.sub(r"'[^']*'|\"[^\"]*\"|\S*\d\S*", "…", str(status["error_message"]))
        reasons[f"{etype}: {status['error_kind']}: {words[:90]}"] += 1
    return [f"{c} {r}" for r, c in reasons.most_common(n)]


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
    """Share of samples per leaf frame and per src/pim_hub/cli/driver frame seen anywhere in the stack."""
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
    profile_s: int = 0,
    bulk: str = "async",
    replicas: int = 1,
    store: str = "memory",
    load_live_seconds: int = 0,
    load_live_after: float = 0.25,
    load_live_normal_share: float = 0.2,
    resync: bool = True,
) -> dict[str, Any]:
    """Full catalogue, 1% re-sync and a live webhook stream through the whole hub.

    `load_live_seconds` > 0 adds the load-plus-live case: once `load_live_after` of the
    catalogue is in Magento, signed webhooks edit products the load has delivered, DURING the
    rest of the load: `live_rate` per second of `enabled` flips (the `immediate` lane) and
    `load_live_normal_share` as many name edits (the `normal` lane) beside them.
    """
    work = Path(tempfile.mkdtemp(prefix="pimhub-bench-e2e-"))
    akeneo_port, magento_port = demo.free_port(), demo.free_port()
    akeneo_url = f"http://127.0.0.1:{akeneo_port}"
    magento_url = f"http://127.0.0.1:{magento_port}"
    result: dict[str, Any] = {
        "products": products,
        "magento_bulk": bulk,
        "replicas": replicas,
        "mutator_store": store,
        # Measured in this run, before the load: the unit of the *_in_references figures.
        "reference_cpu_s": round(reference.cpu_seconds(), 4),
    }
    with (
        broker_metrics.BrokerMetrics() as requests,
        broker_metrics.exported_to(requests),
        _child(["magento", str(magento_port)], magento_url + STATE_PATH, work / "magento.log") as m,
        _child(
            ["akeneo", str(akeneo_port), str(products)],
            akeneo_url + "/api/rest/v1/channels",
            work / "akeneo.log",
        ) as a,
        local_stack(
            f"pimhub_bench_e2e_{os.getpid()}",
            log_dir=work,
            extra_env=demo.stack_env(
                {
                    **demo.ingest_env(akeneo_url),
                    "HUB_LOG_LEVEL": "WARNING",
                    "HUB_MUTATOR_STORE": store,
                }
            ),
        ) as stack,
        RssWatch() as rss,
    ):
        rss.watch("akeneo-sandbox", a.pid)
        rss.watch("magento-sandbox", m.pid)
        from pim_hub.sandbox.akeneo import Catalogue

        want = len(demo.expected_skus(Catalogue(products=products, seed=SEED)))
        hub = demo.start_services(stack, magento_url, bulk=bulk, replicas=replicas)
        for name, pid in hub.pids().items():
            rss.watch(name, pid)
        time.sleep(3)  # the mutator's group joins before the load starts

        # (4) full catalogue
        pids = {**hub.pids(), "akeneo-sandbox": a.pid, "magento-sandbox": m.pid}
        cpu0 = _cpu(pids)
        requests0 = requests.snapshot()
        during = reference.DuringLoad().start()
        status_ends = _ends(stack, [topics.DELIVERY_STATUS])
        stage_ends = _ends(stack, FULL_STAGES)
        started_epoch, started = time.time(), time.monotonic()
        sync = subprocess.Popen(
            [sys.executable, "-m", "pim_hub", "sync", "akeneo", "--full"],
            env={**os.environ, **stack.env, **demo.ingest_env(akeneo_url)},
            cwd=ROOT,
            stdout=(work / "sync-full.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        rss.watch("sync", sync.pid)
        sync_ended: list[float] = []

        def wait_sync() -> None:
            sync.wait()
            sync_ended.append(time.monotonic())

        waiter = threading.Thread(target=wait_sync, daemon=True)
        waiter.start()
        load_live: dict[str, Any] = {}
        live_thread: threading.Thread | None = None
        if load_live_seconds > 0:
            live_thread = threading.Thread(
                target=_load_live_stream,
                args=(stack, hub, akeneo_url, magento_url, want, load_live, live_rate),
                kwargs={
                    "seconds": load_live_seconds,
                    "after": load_live_after,
                    "normal_share": load_live_normal_share,
                },
                daemon=True,
            )
            live_thread.start()
        profile: dict[str, list[str]] = {}
        profiler: threading.Thread | None = None
        if profile_s:
            # On its own thread: the settle check (and so the timing) goes on meanwhile.
            # py-spy takes CPU of its own; the result says the run was profiled.
            targets = {k: v for k, v in pids.items() if k in PROFILED}

            def profile_later() -> None:
                time.sleep(2)
                profile.update(_profile(targets, profile_s, work))

            profiler = threading.Thread(target=profile_later, daemon=True)
            profiler.start()
        done = _wait_settled(stack, magento_url, want, timeout=1800, running=sync)
        waiter.join(10)
        if sync.returncode != 0:
            raise demo.StageFailed(f"the full sync failed; see {work / 'sync-full.log'}")
        sync_s = sync_ended[0] - started
        full_s = done - started_epoch
        cpu1 = _cpu(pids)
        spent = {k: cpu1.get(k, 0) - cpu0.get(k, 0) for k in cpu1}
        requests1 = requests.snapshot()
        during.stop()
        load_reference = during.median()
        if profiler is not None:
            profiler.join(profile_s + 90)
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
                "full_stage_done_s": _stage_done(stack, stage_ends, started_epoch),
                "full_retried_jobs": counts["retried"],
                "full_retry_reasons": _retry_reasons(stack, status_ends),
                "full_dead_jobs": counts.get("dead", 0),
                "full_magento_requests": _magento(magento_url, count_only=True)["requests"],
                "full_cpu_s": {k: round(v, 1) for k, v in spent.items()},
                **{
                    f"full_{k}": v
                    for k, v in cpu_per_product(spent, want, result["reference_cpu_s"]).items()
                },
                # CPU-seconds of every core over the load: 2 x full_seconds is a full machine.
                "full_machine_busy_share": round(
                    (cpu1["machine_busy"] - cpu0["machine_busy"])
                    / (full_s * (psutil.cpu_count() or 1)),
                    3,
                ),
                "full_profiled": bool(profile_s),
                # The same unit measured during the load (the host's speed moves): samples
                # and median, and the per-product figures in it.
                "full_reference_cpu_s_during_load": [round(s, 4) for s in during.samples],
                **(
                    {
                        f"full_{k}_during_load": v
                        for k, v in cpu_per_product(spent, want, load_reference).items()
                        if k.endswith("_in_references")
                    }
                    if load_reference
                    else {}
                ),
                # What the broker was asked to do for its CPU (from its own metrics).
                "full_broker_requests": broker_metrics.report(
                    broker_metrics.difference(requests0, requests1),
                    spent.get("broker", 0),
                    want,
                ),
            }
        )
        if profile:
            result["full_profile_top_frames"] = profile
        result["full_batches"] = _batch_sizes(_scrape(hub))
        # What is measured so far, in case a later stage fails on a busy machine.
        print(json.dumps(result, default=str), file=sys.stderr, flush=True)
        if live_thread is not None:
            live_thread.join(load_live_seconds + 600)
            result.update(_load_live_results(stack, load_live, done))
            scraped = _scrape(hub)
            result["load_live_receiver_seconds"] = _receiver_seconds(hub, scraped)
            result["load_live_event_loop_lag"] = _event_loop_lag(scraped)
            # Held jobs over the whole run: the live ones waiting for the load's (order).
            result["load_live_held_jobs"] = _held(scraped)
            # Each webhook's send and answer, and when its entity showed on each topic.
            (work / "load-live-timings.json").write_text(
                json.dumps(
                    {k: load_live.get(k) for k in ("timeline", "immediate", "normal", "delivered")}
                )
            )

        # (5) re-sync with 1% changed
        if resync:
            result.update(_resync(stack, akeneo_url, magento_url, products, want, work))

        # (6) live stream of signed webhooks
        if live_seconds > 0:
            result.update(_live(stack, hub, akeneo_url, products, live_rate, live_seconds))
        result["peak_rss_mb"] = rss.report()
        # The target is the hub's services'; the sandboxes stand in for Akeneo and Magento
        # (the Magento one holds the whole catalogue) and are reported beside them.
        hub_peaks = [v for k, v in rss.peak.items() if not k.endswith("-sandbox")]
        result["peak_rss_max_vs_target_300mb"] = round(max(hub_peaks) / 2**20 / 300, 3)
        result["load_average_1m"] = round(psutil.getloadavg()[0], 1)
        result["logs"] = str(work)
    return result


def _resync(
    stack: Stack, akeneo_url: str, magento_url: str, products: int, want: int, work: Path
) -> dict[str, Any]:
    """A delta sync after 1% of the products changed: time until they are all in Magento."""
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
    return {
        "resync_changed": len(changed_skus),
        "resync_seconds": round(resync_s, 1),
        "resync_vs_target_60s": round(resync_s / 60, 3),
        "resync_sync_seconds": round(delta_s, 1),
        "resync_written_in_magento": len(touched),
        "resync_only_changed_written": touched == changed_skus,
        "resync_unchanged_written": len(touched - changed_skus),
    }


def _live(
    stack: Stack, hub: demo.Hub, akeneo_url: str, products: int, live_rate: float, live_seconds: int
) -> dict[str, Any]:
    """Signed webhooks at a steady rate; latency to delivered, and where it goes."""
    result: dict[str, Any] = {}
    stages = [topics.RAW_EVENTS, topics.SNAPSHOTS, topics.MUTATIONS, *demo.job_topics()]
    stage_ends = _ends(stack, stages)
    count = int(live_rate * live_seconds)
    hooks = httpx.post(
        akeneo_url + EDIT_PATH,
        json={"start": 50, "stride": max(1, products // count), "count": count, "sign": True},
        timeout=120,
    ).json()
    streamed = _apart(_stream_sync, hub.webhook_url, hooks, live_rate)
    sent, statuses = streamed.sent, streamed.statuses
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
    q = _quantiles_ms(lat)
    result.update(
        {
            "live_updates": len(keys),
            "live_rate_per_s": live_rate,
            "live_seconds": live_seconds,
            "live_http_statuses": dict(Counter(statuses)),
            "live_delivered": len(delivered),
            "live_lost": len(keys) - len(delivered),
            "live_p50_ms": q.get("p50"),
            "live_p99_ms": q.get("p99"),
            "live_max_ms": q.get("max"),
            "live_p99_vs_target_2s": round(_p99(lat) / 2, 3) if lat else None,
        }
    )
    result["live_stage_ms"] = _stage_latencies(stack, stage_ends, sent, delivered)
    return result


def _load_live_stream(
    stack: Stack,
    hub: demo.Hub,
    akeneo_url: str,
    magento_url: str,
    want: int,
    out: dict[str, Any],
    rate: float,
    *,
    seconds: int,
    after: float,
    normal_share: float,
) -> None:
    """The live stream of the load-plus-live case (on a thread while the load runs)."""
    try:
        deadline = time.monotonic() + 1800
        while _magento(magento_url, count_only=True)["count"] < after * want:
            if time.monotonic() > deadline:
                raise demo.StageFailed("the load never reached the live stream's start")
            time.sleep(0.5)
        # Products only (SKU-<index>): the configurables are the models'.
        delivered = [s for s in _magento(magento_url)["updated"] if re.fullmatch(r"SKU-\d{7}", s)]
        n_imm = int(rate * seconds)
        n_norm = int(rate * normal_share * seconds)
        # Distinct products, spread over what the load has delivered so far.
        step = max(1, len(delivered) // max(1, n_imm + n_norm))
        chosen = delivered[::step][: n_imm + n_norm]
        n_imm = min(n_imm, len(chosen) * n_imm // max(1, n_imm + n_norm))
        out["stage_ends"] = _ends(
            stack, [topics.RAW_EVENTS, topics.SNAPSHOTS, topics.MUTATIONS, *demo.job_topics()]
        )

        def edit(skus: list[str], field: str) -> list[dict[str, Any]]:
            hooks: list[dict[str, Any]] = httpx.post(
                akeneo_url + EDIT_PATH,
                json={"skus": skus, "count": len(skus), "field": field, "sign": True},
                timeout=300,
            ).json()
            return hooks

        immediate = edit(chosen[:n_imm], "enabled")
        normal = edit(chosen[n_imm:], "name")
        # Interleaved by their place in time: both lanes run the whole stream.
        merged = sorted(
            [(i / max(1, len(immediate)), h) for i, h in enumerate(immediate)]
            + [(i / max(1, len(normal)), h) for i, h in enumerate(normal)],
            key=lambda pair: pair[0],
        )
        out["lanes"] = {h["key"]: "immediate" for h in immediate} | {
            h["key"]: "normal" for h in normal
        }
        out["machine_load_at_start"] = round(psutil.getloadavg()[0], 1)
        started = time.time()
        total_rate = rate * (1 + normal_share)
        # The broker's own answer time meanwhile, from a process of its own: what a produce
        # waits for (the receiver answers a webhook only once its event is acknowledged).
        probe = threading.Thread(
            target=lambda: out.update(
                broker_acks=_apart(_ack_probe, stack.rt.broker.bootstrap, len(merged) / total_rate)
            ),
            daemon=True,
        )
        probe.start()
        streamed = _apart(_stream_sync, hub.webhook_url, [h for _, h in merged], total_rate)
        probe.join(timeout=60)
        out.update(
            {
                "sent": streamed.sent,
                "statuses": streamed.statuses,
                "answers": streamed.answers,
                "sender_loop_lag": streamed.loop_lag,
                "timeline": streamed.timeline,
                "started": started,
                "ended": time.time(),
            }
        )
        out["machine_load_at_end"] = round(psutil.getloadavg()[0], 1)
    except Exception as exc:  # reported in the result, the load goes on
        out["error"] = f"{type(exc).__name__}: {exc}"


def _load_live_results(stack: Stack, live: dict[str, Any], load_done: float) -> dict[str, Any]:
    """Latency per lane and per hop of the load-plus-live stream."""
    if "sent" not in live:
        return {"load_live_error": live.get("error", "no stream")}
    sent: dict[str, float] = live["sent"]
    lanes: dict[str, str] = live["lanes"]
    keys = list(sent)
    since = datetime.fromtimestamp(min(sent.values()) - 1, UTC)
    delivered: dict[str, float] = {}
    deadline = time.monotonic() + 180
    while len(delivered) < len(keys) and time.monotonic() < deadline:
        rows = stack.query(
            "SELECT entity_key, occurred_at AS at FROM deliveries "
            "WHERE entity_key = ANY(%s) AND status IN ('delivered', 'skipped') "
            "AND occurred_at > %s",
            keys,
            since,
        )
        delivered = {}
        for r in rows:
            at = r["at"].timestamp()
            # The first delivery after this update was sent (not the load's own, earlier).
            if at >= sent[r["entity_key"]] and at < delivered.get(r["entity_key"], float("inf")):
                delivered[r["entity_key"]] = at
        time.sleep(1)
    live["delivered"] = delivered
    result: dict[str, Any] = {
        "load_live_updates": len(keys),
        "load_live_http_statuses": dict(Counter(live["statuses"])),
        # From sending a webhook to the receiver's answer, as the sender saw it (its wait
        # for one of its connections included).
        "load_live_answer_ms": _quantiles_ms(live["answers"]),
        # The sender's own event loop: how late it ran a timer (its part of those answers).
        "load_live_sender_loop_lag_ms": _quantiles_ms(live["sender_loop_lag"]),
        "load_live_lost": len(keys) - len(delivered),
        # Sent while the load ran: 1.0 means the whole stream overlapped the load.
        "load_live_sent_during_load_share": round(
            sum(1 for at in sent.values() if at < load_done) / max(1, len(sent)), 3
        ),
        "load_live_ended_before_load_done_s": round(load_done - live["ended"], 1),
        "load_live_machine_load": [live["machine_load_at_start"], live["machine_load_at_end"]],
    }
    if live.get("broker_acks"):
        # One record every 100 ms, acks=all: the broker's produce answer time during the stream.
        acks = [latency for _, latency in live["broker_acks"]]
        result["load_live_broker_ack_ms"] = {
            **_quantiles_ms(acks),
            "probes": len(acks),
            "over_500ms": sum(1 for a in acks if a > 0.5),
        }
    for lane in ("immediate", "normal"):
        lane_sent = {k: v for k, v in sent.items() if lanes.get(k) == lane}
        lane_done = {k: v for k, v in delivered.items() if k in lane_sent}
        lat = sorted(lane_done[k] - lane_sent[k] for k in lane_done)
        if not lat:
            continue
        q = _quantiles_ms(lat)
        result[f"load_live_{lane}"] = {
            "updates": len(lane_sent),
            "delivered": len(lane_done),
            "p50_ms": q["p50"],
            "p99_ms": q["p99"],
            "max_ms": q["max"],
            "p99_vs_target_2s": round(_p99(lat) / 2, 3),
            "stage_ms": _stage_latencies(
                stack, live["stage_ends"], lane_sent, lane_done, live.setdefault(lane, {})
            ),
        }
    return result


def _stage_latencies(
    stack: Stack,
    starts: dict[tuple[str, int], int],
    sent: dict[str, float],
    delivered: dict[str, float],
    first: dict[str, dict[str, float]] | None = None,
) -> dict[str, str]:
    """p50 / p99 from the webhook's send to each entity's first record on each topic (kept
    in `first`, topic -> entity key -> epoch seconds, when given)."""
    first = {} if first is None else first
    for msg in _since(stack, starts):
        key = (msg.key() or b"").decode(errors="replace")
        found = re.search(r"product:[0-9a-f-]{36}", key)
        stamp = timestamp_ms(msg)
        if found is None or stamp is None or found.group() not in sent:
            continue
        topic = str(msg.topic())
        name = "jobs" if topic.startswith("hub.jobs.") else topic
        seen = first.setdefault(name, {})
        seen[found.group()] = min(seen.get(found.group(), stamp / 1000), stamp / 1000)
    return _hop_quantiles(first, sent, delivered)


def _hop_quantiles(
    first: dict[str, dict[str, float]], sent: dict[str, float], delivered: dict[str, float]
) -> dict[str, str]:
    """p50 / p99 of each hop (entity key -> when first seen there) from the send, and of the
    hub's own part (from the raw event to the delivery)."""
    first = {**first, "delivered": delivered}
    out = {}
    for name, at in first.items():
        lat = sorted(at[k] - sent[k] for k in at)
        if lat:
            out[name] = _p50_p99(lat)
    # The hub's own part, from the receiver's write on: what is left without the sender's and
    # the receiver's waits for a core (docs/performance.md, "CPU priority for the background
    # services, tried on an emulated slow host").
    raw = first.get(topics.RAW_EVENTS, {})
    from_raw = sorted(delivered[k] - raw[k] for k in delivered if k in raw)
    if from_raw:
        out["raw event -> delivered"] = _p50_p99(from_raw)
    return out


def _p50_p99(seconds: list[float]) -> str:
    q = _quantiles_ms(seconds)
    return f"p50 {q['p50']}, p99 {q['p99']} ({len(seconds)})"


def _receiver_seconds(hub: demo.Hub, scraped: Scraped) -> dict[str, Any]:
    """How long the webhook receiver itself took to answer (its own histogram), to set
    beside the sender's view (`load_live_answer_ms`): the difference waited elsewhere. With
    `waited`, how long its handlers waited for the event loop after a request's head was read."""
    if "ingest-web" not in hub.metrics_ports:
        return {}
    families = scraped.get("ingest-web")
    if families is None:
        return {"error": "its /metrics did not answer"}
    answered = _histogram_summary(families, "pimhub_ingest_webhook_seconds")
    waited = _histogram_summary(families, "pimhub_ingest_webhook_wait_seconds")
    return {**answered, "waited": waited} if waited else answered


def _event_loop_lag(scraped: Scraped) -> dict[str, dict[str, Any]]:
    """Each service's event-loop lag since it started (`pimhub_event_loop_lag_seconds`):
    how late a callback that was due ran, a request or a delivery included."""
    out = {}
    for name, families in scraped.items():
        summary = _histogram_summary(families, "pimhub_event_loop_lag_seconds")
        if summary:
            out[name] = summary
    return out


def _histogram_summary(families: Iterable[Any], name: str) -> dict[str, Any]:
    """Count, mean and the buckets that hold the 50th and 99th percentile of a Prometheus
    histogram, all its label sets added together."""
    buckets: dict[float, float] = defaultdict(float)
    total = count = 0.0
    for family in families:
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] += sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    if not count:
        return {}
    # The upper bound of the bucket that holds the 50th and 99th percentile.
    bound = {
        q: next(le for le, n in sorted(buckets.items()) if n >= q * count) for q in (0.5, 0.99)
    }
    return {
        "count": int(count),
        "mean_ms": round(1000 * total / count, 1),
        "p50_at_most_s": bound[0.5],
        "p99_at_most_s": bound[0.99],
    }


def _apart(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in a process of its own, for what stands outside the hub (the webhook
    sender stands for Akeneo's servers; the broker probe for a client of the broker).

    Run on a thread of this process, the sender shared one interpreter (and its lock) with
    the benchmark's own threads on a saturated machine, and its waits were counted as the
    hub's first hop (docs/performance.md, "100,000 products on a host like the issue's").
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(work, *args).result()


def _ack_probe(bootstrap: str, seconds: float, every_s: float = 0.1) -> list[tuple[float, float]]:
    """Produce one small record every `every_s` to a topic of its own for `seconds`;
    (sent at, seconds to the broker's acknowledgement) of each."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    results: list[tuple[float, float]] = []
    start = time.monotonic()
    for i in range(1, int(seconds / every_s) + 1):
        sent_at, sent = time.time(), time.perf_counter()

        def acked(err: Any, _msg: Any, sent: float = sent, sent_at: float = sent_at) -> None:
            if err is None:
                results.append((sent_at, time.perf_counter() - sent))

        producer.produce("bench.ack-probe", b"probe", on_delivery=acked)
        # Serves acknowledgements as soon as they arrive, until the next record is due.
        while (left := start + i * every_s - time.monotonic()) > 0:
            producer.poll(left)
    producer.flush(30)
    return sorted(results)  # acknowledged out of order across partitions


class Streamed(NamedTuple):
    """What the webhook sender saw."""

    sent: dict[str, float]  # entity key -> when its webhook was first sent (epoch seconds)
    loop_lag: list[float]  # how late the sender's own loop ran a timer, every 50 ms
    # (entity key, sent at, {_sender_trace's step: at}, answered at, status) of each attempt:
    # status is the HTTP status, or the name of the error that left no answer
    timeline: list[tuple[str, float, dict[str, float], float, str]]

    @property
    def statuses(self) -> list[str]:
        """Each attempt's HTTP status, or the error's name."""
        return [status for *_, status in self.timeline]

    @property
    def answers(self) -> list[float]:
        """Each answer's seconds after its webhook was first sent."""
        return [at - sent for _, sent, _, at, status in self.timeline if status.isdigit()]


#: Connections the webhook sender may hold at once. It stands for Akeneo's servers, so it must
#: not queue requests of its own while the hub answers: at 60 webhooks/s even answers taking
#: 4 s on average (the Events API's give up after 0.5 s) need fewer.
SENDER_CONNECTIONS = 256


def _sender_trace() -> aiohttp.TraceConfig:
    """aiohttp's request events, kept in each request's `trace_request_ctx` dict: when it
    began opening a connection, when that was open, when its head left, when the answer
    came back."""
    trace = aiohttp.TraceConfig()

    def at(name: str) -> Callable[..., Any]:
        async def keep(_session: Any, context: Any, _params: Any) -> None:
            context.trace_request_ctx.setdefault(name, time.time())

        return keep

    trace.on_connection_create_start.append(at("connect"))
    trace.on_connection_create_end.append(at("connected"))
    trace.on_request_headers_sent.append(at("head_sent"))
    trace.on_request_end.append(at("answer_head"))
    return trace


def _stream_sync(url: str, hooks: list[dict[str, Any]], rate: float) -> Streamed:
    return asyncio.run(_stream(url, hooks, rate))


def _p99(ordered: list[float]) -> float:
    """The 99th percentile of sorted values (the lower of the two around it)."""
    return ordered[int(0.99 * (len(ordered) - 1))]


def _quantiles_ms(seconds: list[float]) -> dict[str, int]:
    if not seconds:
        return {}
    ordered = sorted(seconds)
    return {
        "p50": round(1000 * statistics.median(ordered)),
        "p99": round(1000 * _p99(ordered)),
        "max": round(1000 * ordered[-1]),
    }


async def _stream(url: str, hooks: list[dict[str, Any]], rate: float) -> Streamed:
    """Post one signed webhook every 1/rate seconds (open loop: a slow answer does not slow us).

    Returns when each was sent, every attempt's timings and outcome, and the sender's own
    event-loop lag (its waits are in the answers' times too).
    """
    sent: dict[str, float] = {}
    lag: list[float] = []
    timeline: list[tuple[str, float, dict[str, float], float, str]] = []

    async def watch(every_s: float = 0.05) -> None:
        while True:
            due = time.perf_counter() + every_s
            await asyncio.sleep(every_s)
            lag.append(max(time.perf_counter() - due, 0.0))

    # aiohttp, not httpx: httpcore's pool looks at every connection for every waiting
    # request, and on a host short of CPU the sender's own queue held webhooks for seconds
    # (docs/performance.md, "The first hop was the load generator's connection pool").
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=SENDER_CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=30),
        trace_configs=[_sender_trace()],
    ) as client:

        async def one(hook: dict[str, Any]) -> None:
            key = hook["key"]
            sent[key] = time.time()
            # Akeneo retries a failed delivery; so does the load generator, once.
            for attempt in (1, 2):
                steps: dict[str, float] = {}
                try:
                    async with client.post(
                        url,
                        data=hook["body"].encode(),
                        headers=hook["headers"],
                        trace_request_ctx=steps,
                    ) as resp:
                        await resp.read()
                        status = str(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = type(exc).__name__
                timeline.append((key, sent[key], steps, time.time(), status))
                if status.isdigit() or attempt == 2:
                    return

        watcher = asyncio.create_task(watch())
        tasks = []
        start = time.perf_counter()
        for i, hook in enumerate(hooks):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(hook)))
        await asyncio.gather(*tasks)
        watcher.cancel()
    return Streamed(sent, lag, timeline)


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.bench_e2e [PRODUCTS] [--live-seconds S] [--live-rate R] [--profile S]
    [--load-live-seconds S] [--no-resync]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("products", nargs="?", type=int, default=3_000)
    parser.add_argument("--live-seconds", type=int, default=60, help="0: no live stream")
    parser.add_argument("--live-rate", type=float, default=50.0, help="webhooks per second")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="py-spy the services this long during the full load (it takes CPU of its own)",
    )
    parser.add_argument(
        "--bulk",
        choices=("async", "sync"),
        default="async",
        help="the Magento integration's `bulk` mode (sync: one REST call per product and view)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="processes of the mutator and of the `normal` dispatcher (one group each)",
    )
    parser.add_argument(
        "--store",
        choices=("memory", "rocksdb"),
        default="memory",
        help="the mutator's table store (rocksdb keeps its memory flat as the catalogue grows)",
    )
    parser.add_argument(
        "--load-live-seconds",
        type=int,
        default=0,
        help="the load-plus-live case: live webhooks this long DURING the full load",
    )
    parser.add_argument("--no-resync", action="store_true", help="skip the 1%% re-sync")
    args = parser.parse_args(argv)
    result = run(
        args.products,
        args.live_rate,
        args.live_seconds,
        args.profile,
        args.bulk,
        args.replicas,
        args.store,
        load_live_seconds=args.load_live_seconds,
        resync=not args.no_resync,
    )
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "akeneo":
        _serve_akeneo(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "magento":
        _serve_magento(int(sys.argv[2]))
    else:
        main()
