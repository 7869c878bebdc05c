"""`hub demo`: the Akeneo sandbox catalogue through the whole hub into the Magento sandbox."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from pim_hub.devstack.stack import Stack, Timeout, local_stack
from pim_hub.drivers.discovery import discover
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime.logread import ephemeral_consumer, log_bounds, partitions_of
from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.akeneo import Catalogue
from pim_hub.sandbox.akeneo import create_app as akeneo_app
from pim_hub.sandbox.akeneo.catalogue import Change
from pim_hub.sandbox.akeneo.server import serve_in_thread
from pim_hub.sandbox.akeneo.webhooks import legacy_webhook
from pim_hub.sandbox.magento import AttributeSeed, MagentoState, SandboxConfig, running_server
from pim_hub.sandbox.magento import create_app as magento_app
from pim_hub.schemas import topics
from pim_hub.services.ingest.web import EVENTS_API_PATH

console = Console(soft_wrap=True)

PRODUCTS = 300
INTEGRATION_ID = "demo-magento"
#: the sandbox connection's credentials (a local simulator, not a secret)
AKENEO_CREDENTIALS = {
    "client_id": "demo_client",
    "secret": "demo_secret",
    "username": "demo_api",
    "password": "demo_password",
}
WEBHOOK_SECRET = "demo-webhook-secret"  # noqa: S105 (the sandbox subscription's secret)
SELECTS = ("color", "size", "shoe_size", "brand")
MULTIS = ("material",)
VIEWS = {"default": "en_US", "fr": "fr_FR", "de": "de_DE"}
ATTRIBUTE_SEEDS = tuple(
    AttributeSeed(code, 500 + i, "multiselect" if code in MULTIS else "select", code)
    for i, code in enumerate((*SELECTS, *MULTIS))
)
#: entity types Magento gets: structure types Magento has no use for stay in the hub
ENTITY_TYPES = ["category", "family_variant", "product_model", "product"]
SERVICES = (
    "mutator",
    "fanout",
    "projector",
    "dispatcher-magento2-immediate",
    "dispatcher-magento2-normal",
    "dispatcher-magento2-low",
    "ingest-web",
    "enricher",
)
TERMINAL = ("delivered", "skipped", "dead")


class StageFailed(RuntimeError):
    """A stage of the demo (or of a benchmark) did not complete."""


def magento_config(base_url: str, bulk: str = "async") -> dict[str, Any]:
    """The magento2 integration's configuration for the sandbox catalogue.

    `bulk: async` sends product creations through Magento's async bulk API (one request
    per batch and store view instead of one per product and store view).
    """
    rules: list[dict[str, Any]] = [
        {"akeneo": "name", "magento": "name"},
        {"akeneo": "description", "magento": "description"},
        {"akeneo": "price", "magento": "price"},
        {"akeneo": "weight", "magento": "weight"},
        {"akeneo": "is_new", "magento": "is_new", "type": "pim_catalog_boolean"},
        {"akeneo": "release_date", "magento": "release_date", "type": "pim_catalog_date"},
        {"akeneo": "rating", "magento": "rating", "type": "pim_catalog_number"},
        *({"akeneo": c, "magento": c, "type": "pim_catalog_simpleselect"} for c in SELECTS),
        *({"akeneo": c, "magento": c, "type": "pim_catalog_multiselect"} for c in MULTIS),
    ]
    return {
        "base_url": base_url,
        "auth": {"kind": "admin_token", "username": "admin", "password": "admin123"},
        "locales": {loc: [view] for view, loc in VIEWS.items()},
        "websites": [
            {
                "code": "base",
                "id": 1,
                "channel": "ecommerce",
                "currency": "EUR",
                "store_views": list(VIEWS),
            }
        ],
        "attributes": rules,
        "attribute_sets": {"clothing": 9, "shoes": 10},
        "on_delete": "delete",
        "max_concurrency": 8,
        "bulk": bulk,
    }


def free_port() -> int:
    """A TCP port free right now on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def expected_skus(catalogue: Catalogue) -> set[str]:
    """The SKUs Magento should hold: every product plus a configurable per root model."""
    skus = {str(p["values"]["sku"][0]["data"]) for p in catalogue.iter_products()}
    for code in catalogue.iter_model_codes():
        model = catalogue.get_product_model(code)
        if model and model["parent"] is None:
            skus.add(code)
    return skus


@dataclass
class Sandboxes:
    """The Akeneo and Magento simulators, served on threads of this process."""

    catalogue: Catalogue
    akeneo_url: str
    magento_url: str
    magento: Any  # the Starlette app: .state.magento (MagentoState), .state.faults

    @property
    def state(self) -> MagentoState:
        """The Magento sandbox's store."""
        state: MagentoState = self.magento.state.magento
        return state

    def magento_skus(self) -> set[str]:
        """SKUs Magento holds right now."""
        with self.state.locked():
            return set(self.state.products)

    def ingest_env(self) -> dict[str, str]:
        """HUB_INGEST_* variables pointing the sync and the enricher at the Akeneo sandbox."""
        return ingest_env(self.akeneo_url)


def ingest_env(akeneo_url: str) -> dict[str, str]:
    """HUB_INGEST_* variables pointing the sync and the enricher at an Akeneo sandbox."""
    return {
        "HUB_INGEST_AKENEO_URL": akeneo_url,
        "HUB_INGEST_AKENEO_CLIENT_ID": AKENEO_CREDENTIALS["client_id"],
        "HUB_INGEST_AKENEO_SECRET": AKENEO_CREDENTIALS["secret"],
        "HUB_INGEST_AKENEO_USERNAME": AKENEO_CREDENTIALS["username"],
        "HUB_INGEST_AKENEO_PASSWORD": AKENEO_CREDENTIALS["password"],
        "HUB_INGEST_EVENTS_API_SECRET": WEBHOOK_SECRET,
    }


@contextlib.contextmanager
def sandboxes(products: int, seed: int = 7) -> Iterator[Sandboxes]:
    """Both simulators for the duration of the block."""
    catalogue = Catalogue(products=products, seed=seed)
    app = magento_app(MagentoState(SandboxConfig(attributes=ATTRIBUTE_SEEDS)))
    with (
        serve_in_thread(
            akeneo_app(
                catalogue,
                client_id=AKENEO_CREDENTIALS["client_id"],
                secret=AKENEO_CREDENTIALS["secret"],
                username=AKENEO_CREDENTIALS["username"],
                password=AKENEO_CREDENTIALS["password"],
            )
        ) as akeneo_url,
        running_server(app) as magento_url,
    ):
        yield Sandboxes(catalogue, akeneo_url, magento_url, app)


def stack_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Service settings of the demo: short retry tiers so an injected failure heals in seconds."""
    return {
        "HUB_INTEGRATIONS_REFRESH_S": "1",
        "HUB_RETRY_DELAYS_S": "[1,2,3]",
        # Categories, models and variants race across priorities during the full load; a
        # roomy budget lets "not synced yet" references converge instead of dead-lettering.
        "HUB_DISPATCHER_MAX_ATTEMPTS": "40",
        **(extra or {}),
    }


@dataclass
class Hub:
    """The running services of one stack, with their metrics and webhook addresses."""

    stack: Stack
    web_port: int
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def webhook_url(self) -> str:
        """Where Akeneo's Events API posts."""
        return f"http://127.0.0.1:{self.web_port}{EVENTS_API_PATH}"

    def dispatchers_assigned(self) -> bool:
        """Whether every dispatcher process holds partitions (its group has let it in).

        A load started before then finds the `low` dispatcher, which delivers categories,
        still joining, and products that wait for those categories go round the retries.
        """
        for name, port in self.metrics_ports.items():
            if not name.startswith("dispatcher-"):
                continue
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
            except httpx.HTTPError:
                return False
            held = [
                sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "pimhub_dispatcher_partitions"
                for sample in family.samples
            ]
            if not held or max(held) <= 0:
                return False
        return True

    def pids(self) -> dict[str, int]:
        """Process id per running service."""
        return {s.name: s.process.pid for s in self.stack.supervisor.services if s.alive()}


def start_services(
    stack: Stack,
    magento_url: str,
    with_ingest: bool = True,
    bulk: str = "async",
    replicas: int = 1,
) -> Hub:
    """Register the magento2 integration and start every service, each with a /metrics port.

    `replicas` processes run the mutator and the `normal` dispatcher, the two groups a full
    catalogue load waits for: each further one is named `<service>-<n>` (n from 2).
    """
    upsert_integration(
        stack.database_url,
        discover(),
        Integration(
            INTEGRATION_ID,
            "Demo Magento",
            "magento2",
            True,
            magento_config(magento_url, bulk),
            ENTITY_TYPES,
            {},
        ),
    )
    hub = Hub(stack, free_port())
    sup = stack.supervisor

    def start(name: str, *args: str) -> None:
        port = free_port()
        sup.env["HUB_METRICS_PORT"] = str(port)
        try:
            sup.start(name, *args)
        finally:
            sup.env.pop("HUB_METRICS_PORT", None)
        hub.metrics_ports[name] = port

    def copies(name: str, n: int) -> list[str]:
        return [name] + [f"{name}-{i}" for i in range(2, n + 1)]

    # Two groups: in one worker, fan-out waits behind the mutate agent's queue of snapshots.
    for name in copies("mutator", replicas):
        start(name, "mutator", "--role", "mutate")
    start("fanout", "mutator", "--role", "fanout")
    start("projector", "projector")
    for priority in topics.PRIORITIES:
        service = f"dispatcher-magento2-{priority}"
        for name in copies(service, replicas if priority == "normal" else 1):
            start(name, "dispatcher", "--driver", "magento2", "--priority", priority)
    if with_ingest:
        start("ingest-web", "ingest", "web", "--port", str(hub.web_port))
        start("enricher", "ingest", "enrich")

        def web_ready() -> bool:
            # Readiness is served on the metrics port only (the webhook port answers 404).
            port = hub.metrics_ports["ingest-web"]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).is_success
            except httpx.HTTPError:
                return False

        stack.wait_for(web_ready, timeout=60, what="the webhook receiver answering")
    stack.wait_for(
        hub.dispatchers_assigned, timeout=120, what="every dispatcher holding partitions"
    )
    return hub


def topic_count(settings: Settings, names: list[str]) -> int:
    """Records written to these topics so far (true log ends, read by a fetch)."""
    consumer = ephemeral_consumer(settings, "demo-count")
    try:
        tps = [(name, p) for name in names for p in partitions_of(consumer, name)]
        return sum(end for _, end in log_bounds(consumer, tps).values())
    finally:
        consumer.close()


def job_topics() -> list[str]:
    """The three job topics (retries live on their own topics and are not counted)."""
    return [topics.job_topic(p) for p in topics.PRIORITIES]


def delivery_counts(stack: Stack) -> dict[str, int]:
    """Jobs per latest status, plus `retried`: jobs that needed more than one attempt."""
    rows = stack.query(
        "SELECT status, count(*) AS n, count(*) FILTER (WHERE attempt > 1) AS retried "
        "FROM deliveries GROUP BY status"
    )
    counts = {r["status"]: int(r["n"]) for r in rows}
    counts["retried"] = sum(int(r["retried"]) for r in rows if r["status"] in TERMINAL)
    return counts


def settled(stack: Stack, sandbox: Sandboxes, want: set[str]) -> Callable[[], bool]:
    """A check: every job has a final status and Magento holds exactly the expected SKUs."""

    def check() -> bool:
        jobs = topic_count(stack.settings, job_topics())
        counts = delivery_counts(stack)
        final = sum(counts.get(s, 0) for s in TERMINAL)
        return jobs > 0 and final >= jobs and sandbox.magento_skus() == want

    return check


def run_sync(stack: Stack, ingest_env: dict[str, str], mode: str, log_dir: Path) -> float:
    """`hub sync akeneo --<mode>` as a child process; returns its duration."""
    started = time.monotonic()
    with (log_dir / f"sync-{mode}.log").open("ab") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "pim_hub", "sync", "akeneo", f"--{mode}"],
            env={**os.environ, **stack.env, **ingest_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    if proc.returncode != 0:
        raise StageFailed(f"`hub sync akeneo --{mode}` exited with {proc.returncode}")
    return time.monotonic() - started


def post_webhook(hub: Hub, changes: list[Change]) -> float:
    """Send changes as one signed Events API request; returns when it was sent (epoch s)."""
    hook = legacy_webhook(changes, secret=WEBHOOK_SECRET)
    sent = time.time()
    resp = httpx.post(hub.webhook_url, content=hook.body, headers=hook.headers, timeout=10)
    if resp.status_code != 200:
        raise StageFailed(f"the webhook receiver answered {resp.status_code}: {resp.text[:200]}")
    return sent


def delivered_after(stack: Stack, key: str, since: float) -> dict[str, Any] | None:
    """The delivery of an entity that finished after `since` (epoch seconds), if any."""
    rows = stack.query(
        "SELECT status, attempt, occurred_at FROM deliveries WHERE entity_key = %s "
        "AND status = 'delivered' AND occurred_at > %s ORDER BY occurred_at DESC LIMIT 1",
        key,
        datetime.fromtimestamp(since, UTC),
    )
    return rows[0] if rows else None


def wait_delivered(stack: Stack, key: str, since: float, what: str) -> dict[str, Any]:
    """Wait for the delivery of an entity after `since`; its row (status, attempt, time)."""
    row: dict[str, Any] | None = None

    def check() -> bool:
        nonlocal row
        row = delivered_after(stack, key, since)
        return row is not None

    stack.wait_for(check, timeout=60, what=what)
    assert row is not None
    return row


def _simple_products(catalogue: Catalogue, count: int) -> list[dict[str, Any]]:
    out = []
    for product in catalogue.iter_products():
        if product["parent"] is None and product["values"].get("name"):
            out.append(product)
            if len(out) == count:
                break
    return out


def _renamed(catalogue: Catalogue, product: dict[str, Any], suffix: str) -> Change:
    names = [dict(v) for v in product["values"]["name"]]
    for value in names:
        if value["locale"] == "en_US":
            value["data"] = f"{value['data']} {suffix}"
    return catalogue.update_product(product["uuid"], values={"name": names})


def _admin_name(sandbox: Sandboxes, sku: str) -> str | None:
    with sandbox.state.locked():
        product = sandbox.state.products.get(sku)
        return None if product is None else product.values.get(0, {}).get("name")


def _scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def run_demo(show_logs: bool = True) -> int:
    """Run the demo; 0 when every stage completed, 1 (with the reason) otherwise."""
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="pimhub-demo-"))
    db_name = f"pimhub_demo_{os.getpid()}"
    console.rule("[bold]pim-hub demo: Akeneo sandbox → hub → Magento sandbox")
    try:
        with sandboxes(PRODUCTS) as sandbox:
            console.print(f"akeneo    sandbox on {sandbox.akeneo_url} ({PRODUCTS} products)")
            console.print(f"magento   sandbox on {sandbox.magento_url}")
            env = stack_env(sandbox.ingest_env())
            with local_stack(db_name, log_dir=log_dir, extra_env=env) as stack:
                return _run(stack, sandbox, log_dir, started, show_logs)
    except (Timeout, StageFailed, RuntimeError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}\nservice logs are in {log_dir}")
        return 1


def _run(stack: Stack, sandbox: Sandboxes, log_dir: Path, started: float, show_logs: bool) -> int:
    console.print(f"broker    {stack.rt.broker.bootstrap} ({stack.rt.broker.kind})")
    console.print(f"database  {stack.rt.database.kind} PostgreSQL")
    if show_logs:
        console.print(f"logs      {log_dir}")
    hub = start_services(stack, sandbox.magento_url)
    console.print(
        f"integration {INTEGRATION_ID} (magento2) → {sandbox.magento_url}, "
        f"entity types {', '.join(ENTITY_TYPES)}"
    )
    console.print("services  " + ", ".join(SERVICES))
    catalogue = sandbox.catalogue
    want = expected_skus(catalogue)

    # 1. Full sync: every entity of the PIM becomes a snapshot, a mutation, jobs, Magento calls.
    console.print("\n[bold]1. full sync[/bold]: hub sync akeneo --full")
    t0 = time.monotonic()
    sync_s = run_sync(stack, sandbox.ingest_env(), "full", log_dir)
    snapshots = topic_count(stack.settings, [topics.SNAPSHOTS_BULK])
    console.print(f"  sync      {snapshots} snapshots published in {sync_s:.1f} s")
    stack.wait_for(settled(stack, sandbox, want), timeout=240, what="the catalogue in Magento")
    full_s = time.monotonic() - t0
    counts = delivery_counts(stack)
    console.print(
        f"  magento   {len(sandbox.magento_skus())} products ({catalogue.product_count} Akeneo "
        f"products + {len(want) - catalogue.product_count} configurables) in {full_s:.1f} s, "
        f"{catalogue.product_count / full_s:.0f} products/s end to end"
    )
    console.print(
        f"  jobs      {counts.get('delivered', 0)} delivered, {counts['retried']} needed a retry "
        "(references not synced yet)"
    )

    # 2. Edits in the PIM, reported by signed webhooks, fetched into snapshots by the enricher.
    picked = _simple_products(catalogue, 5)
    if len(picked) < 5:
        raise StageFailed("the sandbox catalogue has fewer than 5 simple products")
    latencies: list[float] = []
    console.print("\n[bold]2. edits[/bold]: 3 renamed products, one signed Events API webhook")
    edits = [_renamed(catalogue, p, "(new season)") for p in picked[:3]]
    sent = post_webhook(hub, edits)
    for product in picked[:3]:
        key = f"product:{product['uuid']}"
        row = wait_delivered(stack, key, sent, f"{key} delivered")
        latencies.append(row["occurred_at"].timestamp() - sent)
    for product in picked[:3]:
        sku = product["values"]["sku"][0]["data"]
        stack.wait_for(
            lambda sku=sku: (_admin_name(sandbox, sku) or "").endswith("(new season)"),  # type: ignore[misc]
            timeout=10,
            what=f"the new name of {sku} in Magento",
        )
    console.print(
        f"  magento   3 names updated, webhook → delivered in {max(latencies) * 1000:.0f} ms"
    )

    # 3. A deletion in the PIM: the product disappears from Magento.
    victim = picked[3]
    victim_sku = victim["values"]["sku"][0]["data"]
    console.print(f"\n[bold]3. deletion[/bold]: {victim_sku} deleted in the PIM")
    sent = post_webhook(hub, [catalogue.delete_product(victim["uuid"])])
    row = wait_delivered(stack, f"product:{victim['uuid']}", sent, "the deletion delivered")
    latencies.append(row["occurred_at"].timestamp() - sent)
    stack.wait_for(
        lambda: victim_sku not in sandbox.magento_skus(), timeout=10, what="the SKU gone"
    )
    console.print(f"  magento   {victim_sku} deleted")
    want.discard(victim_sku)

    # 4. Magento fails: the job goes to a retry topic and is delivered on its next attempt.
    failing = picked[4]
    failing_sku = failing["values"]["sku"][0]["data"]
    console.print(
        f"\n[bold]4. injected failure[/bold]: Magento answers 503 to the next call for {failing_sku}"
    )
    sandbox.magento.state.faults.fail_next(503, times=1, path_contains=failing_sku)
    sent = post_webhook(hub, [_renamed(catalogue, failing, "(retried)")])
    row = wait_delivered(
        stack, f"product:{failing['uuid']}", sent, "the failed job delivered after a retry"
    )
    latencies.append(row["occurred_at"].timestamp() - sent)
    if row["attempt"] < 2 or sandbox.magento.state.faults.injected < 1:
        raise StageFailed(f"the failure was not injected (attempt {row['attempt']})")
    console.print(
        f"  retry     503 → hub.jobs.retry.1s → delivered on attempt {row['attempt']} "
        f"after {latencies[-1]:.1f} s"
    )

    stack.wait_for(settled(stack, sandbox, want), timeout=60, what="every job final")
    return _summary(stack, sandbox, hub, want, latencies, started)


def _summary(
    stack: Stack,
    sandbox: Sandboxes,
    hub: Hub,
    want: set[str],
    latencies: list[float],
    started: float,
) -> int:
    settings = stack.settings
    counts = delivery_counts(stack)
    magento = sandbox.magento_skus()
    console.rule("[bold]summary")
    rows = [
        ("raw events (pim.raw-events)", topic_count(settings, [topics.RAW_EVENTS])),
        ("live snapshots (pim.snapshots)", topic_count(settings, [topics.SNAPSHOTS])),
        ("bulk snapshots (pim.snapshots.bulk)", topic_count(settings, [topics.SNAPSHOTS_BULK])),
        ("mutations (hub.mutations)", topic_count(settings, [topics.MUTATIONS])),
        ("jobs (hub.jobs.*)", topic_count(settings, job_topics())),
        ("delivered", counts.get("delivered", 0)),
        ("needed more than one attempt", counts["retried"]),
        ("skipped (nothing to send)", counts.get("skipped", 0)),
        ("dead", counts.get("dead", 0)),
    ]
    for label, value in rows:
        console.print(f"{label:36} {value:>7}")
    console.print(
        f"{'magento products':36} {len(magento):>7}  (expected from Akeneo: {len(want)}, "
        f"{'equal' if magento == want else 'DIFFERENT'})"
    )
    console.print(
        f"{'webhook → delivered latency':36} p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    console.print(f"{'total time':36} {time.monotonic() - started:7.1f} s")
    console.print("\nmetrics (Prometheus text; while the demo runs, or run `hub exporter`):")
    for name, port in hub.metrics_ports.items():
        series = sum(1 for line in _scrape(port).splitlines() if line.startswith("pimhub_"))
        console.print(f"  {name:36} http://127.0.0.1:{port}/metrics ({series} pimhub_ series)")
    console.print("  dashboards: infra/grafana/, scrape config: infra/prometheus/")
    ok = counts.get("dead", 0) == 0 and magento == want
    console.print("[green]demo passed[/green]" if ok else "[red]demo failed[/red]")
    return 0 if ok else 1
