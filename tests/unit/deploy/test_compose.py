"""The compose file follows the Compose Specification and starts only real hub commands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pim_hub.schemas.topics import PRIORITIES
from tests.unit.deploy.commands import (
    EXPECTED_COMMANDS,
    hub_invocations_in_shell,
    load_generator,
    resolve,
)

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "infra" / "compose" / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
HUB_IMAGE = "pim-hub:"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _hub_services() -> dict[str, list[list[str]]]:
    """Service name -> the hub argument lists it runs."""
    out = {}
    for name, svc in _compose()["services"].items():
        if not str(svc.get("image", "")).startswith(HUB_IMAGE):
            continue
        entrypoint = svc.get("entrypoint")
        command = svc.get("command")
        if entrypoint == ["hub"]:
            out[name] = [list(command or [])]
        elif entrypoint and entrypoint[:2] == ["/bin/sh", "-c"]:
            out[name] = [a for part in command for a in hub_invocations_in_shell(part)]
        else:
            raise AssertionError(f"service {name}: entrypoint {entrypoint!r} is neither hub nor sh")
    return out


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(_compose()), key=lambda e: e.path
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_a_broken_compose_file() -> None:
    # Proves the validation above can fail: an unknown service key is an error in the spec.
    schema = json.loads(SCHEMA.read_text())
    broken = _compose()
    broken["services"]["mutator"]["comand"] = ["mutator"]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))


@pytest.mark.parametrize("service", sorted(_hub_services()))
def test_every_service_runs_a_real_hub_command(service: str) -> None:
    invocations = _hub_services()[service]
    assert invocations, f"{service} runs no hub command"
    for args in invocations:
        resolve(args)


def test_every_expected_command_and_dispatcher_is_deployed() -> None:
    runs = [tuple(a) for inv in _hub_services().values() for a in inv]
    for expected in EXPECTED_COMMANDS:
        assert any(r[: len(expected)] == expected for r in runs), f"no service runs {expected}"
    assert any(r[:3] == ("sync", "akeneo", "--delta") for r in runs)
    for driver in load_generator().DRIVERS:
        for priority in PRIORITIES:
            want = ("dispatcher", "--driver", driver, "--priority", priority)
            assert want in runs, f"no dispatcher for {driver}/{priority}"


def test_kafka_runs_in_kraft_mode_from_the_official_image() -> None:
    kafka = _compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_third_party_images_are_pinned_to_a_version() -> None:
    for name, svc in _compose()["services"].items():
        image = svc["image"]
        assert re.search(r":v?\d+\.\d+(\.\d+)?$", image), f"{name}: {image} is not pinned"


def test_prometheus_scrapes_every_long_running_hub_service() -> None:
    prom = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    names = set(prom["scrape_configs"][0]["dns_sd_configs"][0]["names"])
    one_shot = {"topics", "migrate", "sync-delta"}
    assert names == set(_hub_services()) - one_shot


def test_grafana_is_provisioned_from_infra_grafana() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "../grafana/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "../grafana/dashboards"


def test_no_password_is_written_in_the_compose_file() -> None:
    text = COMPOSE.read_text()
    for match in re.finditer(r"^\s*[A-Z_]*(PASSWORD|SECRET)[A-Z_]*:\s*(\S+)", text, re.M):
        assert match.group(2).startswith("${"), f"literal secret in {match.group(0)}"


def test_every_long_running_hub_service_has_a_healthcheck_asking_hub_health() -> None:
    one_shot = {"topics", "migrate", "sync-delta"}
    for name in _hub_services():
        check = _compose()["services"][name].get("healthcheck", {})
        if name in one_shot:
            assert check.get("disable") is True, name
            continue
        assert check["test"] == ["CMD", "hub", "health", "127.0.0.1:9100"], name
        resolve(check["test"][2:])  # a real hub command
        assert (
            _compose()["services"][name].get("environment", {}).get("HUB_METRICS_PORT", "9100")
            == "9100"
        ), name


def test_the_console_takes_its_users_and_key_from_the_environment_file() -> None:
    console = _compose()["services"]["console"]
    assert resolve(console["command"]) == ("console",)
    assert console["command"][console["command"].index("--host") + 1] == "0.0.0.0"  # noqa: S104
    env = console["environment"]
    # Opt-in through a profile: a `docker compose up` of the hub never needs the console's
    # variables (a `:?` would fail the whole file, profiles or not); the console itself
    # refuses to start without a user. The cookie stays Secure unless turned off.
    assert console["profiles"] == ["console"]
    for name in ("HUB_CONSOLE_USERS", "HUB_CONSOLE_SECRET_KEY"):
        assert env[name] == f"${{{name}:-}}", env[name]
    assert env["HUB_CONSOLE_SECURE_COOKIES"] == "${HUB_CONSOLE_SECURE_COOKIES:-true}"
    assert env["HUB_KAFKA_BOOTSTRAP"] == "kafka:9092"  # the shared hub settings too
    assert console["ports"] == ["${HUB_CONSOLE_PORT:-8095}:8095"]
    example = (COMPOSE.parent / ".env.example").read_text()
    assert "HUB_CONSOLE_USERS=" in example and "HUB_CONSOLE_SECRET_KEY=" in example


def test_the_image_holds_the_console_extra() -> None:
    # The image installs requirements/runtime.lock: it must carry the console's packages.
    from pim_hub.console.commands import CONSOLE_PACKAGES

    lock = (ROOT / "requirements" / "runtime.lock").read_text().lower()
    for package in CONSOLE_PACKAGES:
        name = {"multipart": "python-multipart"}.get(package, package)
        assert re.search(rf"^{re.escape(name)}==", lock, re.M), f"{name} not in runtime.lock"
