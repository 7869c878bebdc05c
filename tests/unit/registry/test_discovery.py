"""Driver discovery: entry points, HUB_EXTRA_DRIVERS, broken packages reported by name."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.drivers.discovery import GROUP, describe, discover, extra_entry_points
from pim_hub.drivers.log import LogDriver
from pim_hub.drivers.webhook.driver import WebhookDriver

FAKE = "tests.unit.registry.fake_drivers"


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


def test_broken_packages_are_reported_by_name_and_the_others_load() -> None:
    cat = discover(
        [
            ep("webhook", "pim_hub.drivers.webhook.driver:WebhookDriver"),
            ep("import-fails", "tests.unit.registry.fake_broken_pkg:Driver"),
            ep("no-module", "tests.unit.registry.does_not_exist:Driver"),
            ep("no-class", f"{FAKE}:Missing"),
            ep("not-a-driver", f"{FAKE}:NotADriver"),
            ep("incomplete", f"{FAKE}:Incomplete"),
            ep("fake-good", f"{FAKE}:GoodDriver"),
            ep("impostor", f"{FAKE}:ClaimsWebhookKey"),
        ]
    )
    assert sorted(cat.drivers) == ["fake-good", "webhook"]
    assert cat.drivers["webhook"] is WebhookDriver
    assert sorted(cat.broken) == [
        "import-fails",
        "impostor",
        "incomplete",
        "no-class",
        "no-module",
        "not-a-driver",
    ]
    assert "some_missing_sdk" in cat.broken["import-fails"]
    assert cat.broken["not-a-driver"].startswith("TypeError")
    assert "does not declare" in cat.broken["incomplete"]
    assert "already taken" in cat.broken["impostor"]
    with pytest.raises(LookupError, match="failed to load"):
        cat.get("import-fails")
    with pytest.raises(LookupError, match="installed drivers: fake-good, webhook"):
        cat.get("magento9")


def test_the_same_class_registered_twice_is_not_a_conflict() -> None:
    value = "pim_hub.drivers.log:LogDriver"
    cat = discover([ep("log", value), ep("log", value)])
    assert cat.drivers == {"log": LogDriver} and cat.broken == {}


def test_extra_drivers_env_is_parsed() -> None:
    eps = extra_entry_points({"HUB_EXTRA_DRIVERS": " log=pim_hub.drivers.log:LogDriver, ,x=a.b:C"})
    assert [(e.name, e.value) for e in eps] == [
        ("log", "pim_hub.drivers.log:LogDriver"),
        ("x", "a.b:C"),
    ]
    assert extra_entry_points({}) == []


def test_describe_exports_the_config_json_schema() -> None:
    d = describe(LogDriver)
    assert (d["key"], d["version"]) == ("log", "1.0.0")
    assert "product" in d["entity_types"]
    assert d["config_schema"]["required"] == ["dsn"]
    assert d["config_schema"]["properties"]["dsn"]["format"] == "password"


def test_cli_lists_drivers_and_reports_a_broken_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HUB_EXTRA_DRIVERS",
        f"log=pim_hub.drivers.log:LogDriver,fake-good={FAKE}:GoodDriver,"
        "broken-sdk=tests.unit.registry.fake_broken_pkg:Driver",
    )
    runner = CliRunner()
    result = runner.invoke(app, ["drivers", "list"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("webhook") and "1.0.0" in line for line in lines)
    assert any(line.startswith("fake-good") and "0.1.0" in line for line in lines)
    assert any("entity types: category, product" in line for line in lines)
    assert any("config: endpoint (string; required)" in line for line in lines)
    assert any("config: dsn (string, secret; required)" in line for line in lines)
    broken = [line for line in lines if line.startswith("broken-sdk")]
    assert broken and "BROKEN" in broken[0] and "some_missing_sdk" in broken[0]

    result = runner.invoke(app, ["drivers", "list", "--json"])
    doc = json.loads(result.stdout)  # stderr may carry log lines
    keys = [d["key"] for d in doc["drivers"]]
    assert {"webhook", "log", "fake-good"} <= set(keys)
    assert list(doc["broken"]) == ["broken-sdk"]
    fake = next(d for d in doc["drivers"] if d["key"] == "fake-good")
    assert fake["config_schema"]["properties"]["retries"]["default"] == 3

    result = runner.invoke(app, ["drivers", "list", "--output", "jsonl"])
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"webhook", "log", "fake-good", "broken-sdk"} <= {r["key"] for r in rows}
    assert "some_missing_sdk" in next(r for r in rows if r["key"] == "broken-sdk")["error"]
    assert next(r for r in rows if r["key"] == "log")["error"] is None

    monkeypatch.setenv("HUB_EXTRA_DRIVERS", "log=pim_hub.drivers.log:LogDriver")
    result = runner.invoke(app, ["drivers", "list", "--schema"])
    assert result.exit_code == 0, result.output
    assert '"title": "LogConfig"' in result.output
