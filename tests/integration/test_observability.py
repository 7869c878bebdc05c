"""Dashboards and alerts evaluated by a real Prometheus scraping the running hub."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import Timeout, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.drivers.discovery import discover
from pim_hub.ops.health import check_all
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.akeneo.webhooks import sign_legacy
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra" / "prometheus"
DASHBOARDS = ROOT / "infra" / "grafana" / "dashboards"
SECRET = "obs-secret"
PRODUCTS = 30
UPDATED = "2026-01-01T10:00:00+00:00"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prom_get(base: str, path: str, **params: str) -> dict[str, Any]:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:  # 400 carries the parse error in JSON
        text = exc.read()
        if exc.code == 503:  # still starting
            return {"status": "unavailable", "error": text.decode(), "data": {"result": []}}
        return dict(json.loads(text))
    except urllib.error.URLError as exc:  # still starting
        return {"status": "unreachable", "error": str(exc), "data": {"result": []}}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, int]], str]]:
    """Starts a real Prometheus (loopback, temp dir, 1 s scrapes) over the given services."""
    subprocess.run([str(PROM / "ensure-prometheus.sh")], check=True, timeout=600)
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: dict[str, int]) -> str:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROM / "alerts.yml")],
            "scrape_configs": [
                {
                    "job_name": "pim-hub",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
                        for name, port in targets.items()
                    ],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def panel_queries() -> list[tuple[str, str, str, bool]]:
    """(dashboard, panel, expr, batch) of every panel target."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            batch = "Sync" in panel["title"] or "Akeneo" in panel["title"]
            for target in panel["targets"]:
                out.append((board["title"], panel["title"], target["expr"], batch))
    return out


def alert_exprs() -> list[tuple[str, str]]:
    import yaml

    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


#: The consumer groups of the session pipeline and of this test's dispatchers.
TEST_GROUPS = (
    r"^(hub\.dispatch\.webhook_obs\..+|hub-mutator(-fanout)?"
    r"|hub\.projector\.(deliveries|entities)|hub\.ingest\..+)$"
)


def test_dashboards_and_alerts_evaluate_against_a_real_prometheus(
    pipeline: Supervisor,
    supervisor: Supervisor,
    prometheus: Callable[[dict[str, int]], str],
    hub_settings: Settings,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    ok, bad = f"obs-ok-{unique}", f"obs-bad-{unique}"
    catalogue = discover()
    # A rate limit makes the dispatcher wait; a closed port makes jobs retry, then die.
    ok_config = {
        "url": f"{http_sink.url}/{unique}",
        "rate_limit": {"requests_per_s": 20, "burst": 1},
    }
    bad_config = {"url": f"http://127.0.0.1:{free_port()}/closed", "timeout_s": 1}
    upsert_integration(
        database_url, catalogue, Integration(bad, bad, "webhook_obs", True, bad_config, None, {})
    )
    upsert_integration(
        database_url, catalogue, Integration(ok, ok, "webhook_obs", True, ok_config, None, {})
    )

    # The mutator and projector are the session pipeline's (one group member each, serving
    # /metrics); the dispatchers, exporter and receiver are this test's own.
    ports = {
        **pipeline.metrics_ports,
        **{
            name: free_port()
            for name in (
                "dispatcher-webhook-immediate",
                "dispatcher-webhook-normal",
                "dispatcher-webhook-low",
                "exporter",
                "ingest-web",
            )
        },
    }
    web_port = free_port()
    supervisor.env["HUB_INGEST_EVENTS_API_SECRET"] = SECRET
    # The retry tiers alone: the closed port's jobs reach the dead letters (the circuit
    # breaker would hold them until the target answers; its alert is tested by promtool).
    supervisor.env["HUB_DISPATCHER_BREAKER_THRESHOLD"] = "0"
    for name, port in ports.items():
        if name in pipeline.metrics_ports:
            continue
        supervisor.env["HUB_METRICS_PORT"] = str(port)
        if name.startswith("dispatcher-"):
            priority = name.rsplit("-", 1)[1]
            supervisor.start(name, "dispatcher", "--driver", "webhook_obs", "--priority", priority)
        elif name == "exporter":
            # This test's groups only: after the rest of the suite the broker holds hundreds
            # of other tests' groups, and the panels need only these.
            supervisor.start(name, "exporter", "--interval", "1", "--groups", TEST_GROUPS)
        elif name == "ingest-web":
            supervisor.start(name, "ingest", "web", "--port", str(web_port))
        else:
            supervisor.start(name, name)
    base = prometheus(ports)
    wait_for(
        lambda: (
            (r := prom_get(base, "/api/v1/query", query='sum(up{job="pim-hub"})'))["data"]["result"]
            and float(r["data"]["result"][0]["value"][1]) == len(ports)
        ),
        # Generous for a loaded machine; about 10 s when idle.
        timeout=120,
        interval=0.5,
        what="every service scraped",
        supervisor=supervisor,
    )

    # Traffic: snapshots through mutator → fan-out → dispatchers, and webhooks to ingest.
    serde, producer = Serde(), make_producer(hub_settings)
    for i in range(PRODUCTS):
        uuid = f"00000000-0000-4000-8000-{unique:0>10}{i:02d}"[:36]
        payload = {
            "uuid": uuid,
            "identifier": f"OBS-{unique}-{i}",
            "enabled": True,
            "family": "shoes",
            "categories": [],
            "values": {"name": [{"locale": "en_US", "scope": None, "data": f"obs {i}"}]},
            "updated": UPDATED,
        }
        record = snapshot_record("product", f"product:{uuid}", payload, UPDATED, "external")
        producer.produce(topics.SNAPSHOTS, serde.encode("Snapshot", record), key=f"product:{uuid}")
    assert producer.flush(30) == 0
    event = {
        "action": "product.updated",
        "event_id": f"obs-{unique}",
        "event_datetime": "2026-01-01T10:00:00+00:00",
        "author": "obs",
        "author_type": "ui",
        "pim_source": "http://pim_hub.sandbox.akeneo.local",
        "data": {"resource": {"uuid": "00000000-0000-4000-8000-000000000001", "identifier": "X"}},
    }
    body = orjson.dumps({"events": [event]})
    stamp = str(int(time.time()))
    hook = f"http://127.0.0.1:{web_port}/webhooks/akeneo/events-api"
    signed = {"x-akeneo-request-timestamp": stamp, "content-type": "application/json"}
    good = httpx.post(
        hook,
        content=body,
        headers={**signed, "x-akeneo-request-signature": sign_legacy(SECRET, stamp, body)},
    )
    forged = httpx.post(
        hook, content=body, headers={**signed, "x-akeneo-request-signature": "0" * 64}
    )
    assert (good.status_code, forged.status_code) == (200, 401), good.text

    wait_for(
        lambda: sum(1 for b in http_sink.bodies() if b.get("integration_id") == ok) >= PRODUCTS,
        timeout=90,
        interval=0.5,
        what="deliveries to the sink",
        supervisor=supervisor,
    )
    dead = f'sum(pimhub_dispatcher_dead_letters_total{{integration="{bad}"}})'
    wait_for(
        lambda: prom_get(base, "/api/v1/query", query=dead)["data"]["result"],
        timeout=60,
        interval=0.5,
        what="dead letters of the failing integration",
        supervisor=supervisor,
    )

    # Every panel query parses and returns data (batch-only sync panels: parse only).
    def evaluate(expr: str) -> list[dict[str, Any]]:
        # The Integration dashboard is read for each integration: one shows deliveries and
        # rate-limit waits, the other retries and dead letters.
        expr = expr.replace("$__rate_interval", "1m")
        # Every scrape variable at "All" (what Grafana sends when nothing is chosen).
        for var in ("namespace", "job", "instance"):
            expr = expr.replace(f"${var}", ".*")
        exprs = (
            [expr.replace("$integration", i) for i in (ok, bad)]
            if "$integration" in expr
            else [expr]
        )
        return [prom_get(base, "/api/v1/query", query=e) for e in exprs]

    queries = panel_queries()
    assert len(queries) >= 30
    missing: list[str] = []

    def every_panel_has_data() -> bool:
        missing.clear()
        for board, panel, expr, batch in queries:
            answers = evaluate(expr)
            for answer in answers:
                assert answer["status"] == "success", f"{board} / {panel}: {answer.get('error')}"
            if not batch and not any(a["data"]["result"] for a in answers):
                missing.append(f"{board} / {panel}: {expr}")
        return not missing

    # Panels fill in as Prometheus scrapes: give them a little time, then name the empty ones.
    with contextlib.suppress(Timeout):
        wait_for(every_panel_has_data, timeout=20, interval=1, what="data in every panel")
    assert not missing, "panels without data:\n" + "\n".join(missing)

    # Every alert expression parses; the rules load healthy; the dead letters alert fires.
    for name, expr in alert_exprs():
        answer = prom_get(base, "/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{name}: {answer.get('error')}"
    groups = prom_get(base, "/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules} == {n for n, _ in alert_exprs()}
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]

    def firing() -> list[dict[str, Any]]:
        alerts = prom_get(base, "/api/v1/alerts")["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "PimHubDeadLetters"
            and a["labels"].get("integration") == bad
        ]

    assert wait_for(
        firing, timeout=15, interval=0.5, what="the dead letters alert", supervisor=supervisor
    )

    # `hub health --prometheus` finds every scraped service and each is live and ready.
    found: list[Any] = []

    # This test's own services must be live and ready. The session pipeline's mutator and
    # projector must be found and live; their readiness includes their group's assignment,
    # which other tests' members of the same groups disturb (it is tested on its own in
    # test_health_probes).
    shared = set(pipeline.metrics_ports.values())
    problems: list[str] = []

    def is_shared(target: str) -> bool:
        url = urlsplit(target if "://" in target else f"http://{target}")
        return url.port in shared

    def all_healthy() -> bool:
        found[:] = check_all([], prometheus=base)
        problems[:] = [
            f"{r.target} {r.service}: {r.error or r.checks}"
            for r in found
            if not (r.live if is_shared(r.target) else r.ok)
        ]
        return len(found) == len(ports) and not problems

    with contextlib.suppress(Timeout):
        wait_for(all_healthy, timeout=120, interval=1, what="every service live and ready")
    assert len(found) == len(ports), [r.target for r in found]
    assert not problems, problems
    assert {r.service for r in found} >= {"dispatcher", "exporter", "ingest-web", "mutator"}
