from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

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


def test_the_four_dashboards_exist_with_queries_in_every_panel() -> None:
    titles = set()
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        titles.add(board["title"])
        assert board["panels"], path.name
        for panel in board["panels"]:
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    assert titles == {
        "pim-hub / Overview",
        "pim-hub / Integration",
        "pim-hub / Ingest",
        "pim-hub / Consumer groups",
    }


def test_the_integration_dashboard_is_filtered_by_a_template_variable() -> None:
    board = json.loads((GRAFANA / "dashboards" / "integration.json").read_text())
    assert "integration" in [v["name"] for v in board["templating"]["list"]]
    for panel in board["panels"]:
        for target in panel["targets"]:
            assert 'integration="$integration"' in target["expr"], panel["title"]


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
