from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def promtool() -> str:
    # Installs the Debian package on a fresh machine; fails (never skips) when it cannot.
    subprocess.run([str(PROM / "ensure-prometheus.sh")], check=True, timeout=600)
    return "promtool"


def test_committed_dashboards_match_the_generator() -> None:
    assert generator().main(["--check"]) == 0, "run python infra/grafana/generate.py"


BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}


def boards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text())
        for path in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels with queries (rows hold none)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def exprs() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expr) of every query."""
    return [
        (board["title"], panel["title"], target["expr"])
        for board in boards().values()
        for panel in panels(board)
        for target in panel["targets"]
    ]


def test_the_four_dashboards_exist_with_queries_in_every_panel() -> None:
    titles = set()
    for name, board in boards().items():
        titles.add(board["title"])
        assert panels(board), name
        for panel in panels(board):
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    assert titles == {
        "pim-hub / Overview",
        "pim-hub / Integration",
        "pim-hub / Ingest",
        "pim-hub / Consumer groups",
    }


def test_the_dashboards_are_valid_models_of_grafanas_sdk() -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    for name, board in boards().items():
        model = Dashboard.from_json(board)
        # Nothing the SDK's types do not know is lost on the way through them.
        assert json.loads(json.dumps(model, cls=JSONEncoder)) == board, name


def test_the_overview_answers_is_it_healthy_now_with_stats_and_tables() -> None:
    board = boards()["overview.json"]
    kinds = [p["type"] for p in panels(board)]
    stats = {p["title"] for p in panels(board) if p["type"] == "stat"}
    tables = {p["title"] for p in panels(board) if p["type"] == "table"}
    assert {"Delivery success (1h)", "Dead letters (1h)", "Services up"} <= stats
    assert any("Oldest unprocessed" in t for t in stats)
    assert tables == {"Worst integrations (1h)", "Top failure reasons (1h)"}
    assert "timeseries" in kinds
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows[:2] == ["Now", "Failures"] and len(rows) >= 5
    for panel in panels(board):
        if panel["type"] == "table":
            assert all(t["format"] == "table" and t["instant"] for t in panel["targets"])


def test_every_datasource_and_variable_resolves() -> None:
    for name, board in boards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in ("namespace", "job", "instance"):
            assert variables[var]["includeAll"] and variables[var]["multi"], (name, var)
        defined = set(variables) | BUILTIN_VARIABLES
        things = [(p["title"], p) for p in panels(board)]
        things += [(v["name"], v) for v in variables.values() if v["type"] == "query"]
        for title, item in things:
            assert item["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
            for target in item.get("targets", []):
                assert target["datasource"] == item["datasource"], title
            text = json.dumps(item.get("targets") or item.get("query"))
            used = set(re.findall(r"\$\{?(\w+)", text))
            assert used <= defined, f"{name} / {title}: undefined {used - defined}"


def test_integrations_are_multi_select_with_all() -> None:
    for name in ("overview.json", "integration.json"):
        board = boards()[name]
        var = {v["name"]: v for v in board["templating"]["list"]}["integration"]
        assert var["multi"] and var["includeAll"] and var["allValue"] == ".*"
        assert var["current"]["value"] == "$__all"
    for panel in panels(boards()["integration.json"]):
        for target in panel["targets"]:
            assert 'integration=~"$integration"' in target["expr"], panel["title"]


def test_no_query_names_a_scrape_job_and_every_one_is_filtered_by_the_variables() -> None:
    for board, panel, expr in exprs():
        assert not re.search(r"\bjob\s*=\s*\"", expr), f"{board} / {panel}: hard-coded job"
        selectors = re.findall(r"\b(?:pimhub_\w+|up)\{([^}]*)\}", expr)
        assert selectors, f"{board} / {panel}: no selector"
        for sel in selectors:
            for var in ("namespace", "job", "instance"):
                assert f'{var}=~"${var}"' in sel, f"{board} / {panel}: {var} not filtered"


def known_metrics() -> set[str]:
    """Every series name the hub serves: the registries of the services and the exporter."""
    from prometheus_client import REGISTRY

    from pim_hub.ops import exporter
    from pim_hub.runtime.metrics import metric_names
    from pim_hub.services.ingest.web import Metrics

    names: set[str] = {"up"}
    for name, kind, _labels in [*metric_names(REGISTRY), *metric_names(Metrics().registry)]:
        names.add(name)
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    names |= {family.name for family in exporter.lag_families([], 0)}
    names |= {family.name for family in exporter.coverage_families([])}
    return names


def test_every_query_uses_metrics_the_hub_serves() -> None:
    known = known_metrics()
    assert "pimhub_dispatcher_jobs_total" in known and "pimhub_consumer_lag_seconds" in known
    for board, panel, expr in exprs():
        used = set(re.findall(r"\b(pimhub_\w+|up)\b(?=\s*[{\[)])", expr))
        assert used, f"{board} / {panel}: no metric"
        assert used <= known, f"{board} / {panel}: unknown {used - known}"
    for rule in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]:
        used = set(re.findall(r"\b(pimhub_\w+)", rule["expr"]))
        assert used <= known, f"{rule['alert']}: unknown {used - known}"


def test_every_query_parses_as_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses rule expressions offline: every panel query becomes a recording rule,
    # with the dashboard variables replaced as Grafana does for "All".
    def substitute(expr: str) -> str:
        expr = expr.replace("$__rate_interval", "1m")
        return re.sub(r"\$\{?(\w+)\}?", ".*", expr)

    rules = [
        {"record": f"panel:{i}", "expr": substitute(expr)} for i, (_, _, expr) in enumerate(exprs())
    ]
    (tmp_path / "panels.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "p", "rules": rules}]})
    )
    done = subprocess.run(
        [promtool, "check", "rules", "panels.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout


def test_panel_links_lead_to_runbook_sections() -> None:
    from tests.unit.observability.test_runbooks import sections

    found = sections()
    linked = 0
    for board in boards().values():
        for panel in panels(board):
            for link in panel.get("links", []):
                fragment = urlsplit(link["url"]).fragment
                assert fragment in found, f"{panel['title']}: #{fragment}"
                linked += 1
    assert linked >= 10


def test_provisioning_points_grafana_at_the_dashboards() -> None:
    provider = (GRAFANA / "provisioning" / "dashboards" / "pim-hub.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    assert (
        "type: prometheus"
        in (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )


def test_alert_rules_and_scrape_config_are_valid(promtool: str) -> None:
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        done = subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=PROM, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
