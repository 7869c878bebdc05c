"""Schema Registry for real: the Confluent client against a registry double, compatibility checks.

The registry is tests/registry_double.py (no registry server runs here); the client is
confluent-kafka's SchemaRegistryClient, as in production.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pim_hub.ops.schemas import (
    avro_subjects,
    check_local,
    check_registry,
    compatibility_problems,
    register,
)
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.errors import RetryableError, SchemaError
from pim_hub.schemas.serde import Registry, SchemaVersion, Serde, all_versions, current
from tests.registry_double import FakeSchemaRegistry
from tests.unit.test_schemas import _sample


@pytest.fixture
def fake() -> Iterator[FakeSchemaRegistry]:
    registry = FakeSchemaRegistry()
    yield registry
    registry.stop()


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def _snapshot_with(change: str) -> dict[str, Any]:
    raw = copy.deepcopy(current("Snapshot").raw)
    fields = raw["fields"]
    if change == "add-with-default":
        fields.append({"name": "source", "type": ["null", "string"], "default": None})
    elif change == "add-without-default":
        fields.append({"name": "source", "type": "string"})
    elif change == "retype":
        next(f for f in fields if f["name"] == "event_id")["type"] = "long"
    elif change == "drop-required":
        raw["fields"] = [f for f in fields if f["name"] != "entity_key"]
    return raw


@pytest.mark.parametrize(
    "change,level,breaks",
    [
        ("add-with-default", "FULL_TRANSITIVE", False),
        ("add-without-default", "BACKWARD", True),  # the new reader misses it in old data
        ("add-without-default", "FORWARD", False),  # old readers skip it
        ("drop-required", "FORWARD", True),  # old readers need it
        ("drop-required", "BACKWARD", False),
        ("retype", "FULL", True),
        ("retype", "NONE", False),
    ],
)
def test_compatibility_checks_catch_breaking_changes(change: str, level: Any, breaks: bool) -> None:
    v1 = current("Snapshot").raw
    problems = compatibility_problems(_snapshot_with(change), [v1], level)
    assert bool(problems) is breaks, problems


def test_the_shipped_schemas_are_compatible_and_a_breaking_v2_is_not() -> None:
    assert check_local().ok
    released = all_versions()
    v1 = released["Snapshot"][0]
    broken = SchemaVersion("Snapshot", 2, _snapshot_with("retype"), None, "", b"")
    report = check_local("FULL_TRANSITIVE", {"Snapshot": [v1, broken]})
    assert not report.ok
    assert any("event_id" in p and "Snapshot v2" in p for p in report.problems), report.problems


def test_register_then_check_against_the_registry(
    fake: FakeSchemaRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, HUB_SCHEMA_REGISTRY_URL=fake.url, HUB_KAFKA_BOOTSTRAP="k:1")
    subjects = avro_subjects(settings)
    assert ("hub.mutations-value", "Mutation") in subjects
    assert ("pim.snapshots-value", "Snapshot") in subjects
    assert ("hub.jobs.retry.30s-value", "Job") in subjects
    assert ("pim.patches-value", "Patch") in subjects
    assert not any(
        s.startswith(("pim.raw-events", "hub.integrations", "pim.patches.json"))
        for s, _ in subjects
    )
    registry = Registry(settings.registry_config() or {})

    before = check_registry(registry, subjects)
    assert before.ok and all("new subject" in line for line in before.lines)

    report = register(registry, subjects, "FULL_TRANSITIVE")
    assert report.ok, report.problems
    assert set(fake.state.subjects) == {s for s, _ in subjects}
    assert fake.state.levels["hub.mutations-value"] == "FULL_TRANSITIVE"
    assert register(registry, subjects).ok  # idempotent: the same ids again
    # One id per released schema version (oldest first), shared by its topics.
    released = sum(len(all_versions()[event]) for event in {event for _, event in subjects})
    assert len(fake.state.schemas) == released == 6  # DeliveryStatus has v1 and v2

    after = check_registry(registry, subjects)
    assert after.ok and all("is registered (id" in line for line in after.lines)


def test_check_reports_a_subject_that_refuses_the_hub_schema(fake: FakeSchemaRegistry) -> None:
    # Someone registered another record under the hub's subject first.
    other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "string"}]}
    registry = Registry(fake.url)
    from confluent_kafka.schema_registry import Schema

    registry.client.register_schema("hub.mutations-value", Schema(str(other).replace("'", '"')))
    report = check_registry(registry, [("hub.mutations-value", "Mutation")])
    assert not report.ok
    assert "incompatible with the subject's latest version" in report.problems[0]
    refused = register(registry, [("hub.mutations-value", "Mutation")])
    assert not refused.ok and "refused" in refused.problems[0]


def test_lookup_only_mode_never_registers(
    fake: FakeSchemaRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(
        monkeypatch,
        HUB_SCHEMA_REGISTRY_URL=fake.url,
        HUB_SCHEMA_REGISTRY_AUTO_REGISTER="false",
        HUB_KAFKA_BOOTSTRAP="k:1",
    )
    record = _sample("Mutation")
    with pytest.raises(SchemaError, match="hub schemas register"):
        Serde(settings.registry_config()).encode("Mutation", record, topic="hub.mutations")
    assert register(Registry(fake.url), [("hub.mutations-value", "Mutation")]).ok
    fake.state.mode = "READONLY"  # what a read-only key sees
    posts_before = [r for r in fake.state.requests if r[1].endswith("/versions")]
    serde = Serde(settings.registry_config())
    data = serde.encode("Mutation", record, topic="hub.mutations")
    assert Serde(settings.registry_config()).decode("Mutation", data) == record
    assert [r for r in fake.state.requests if r[1].endswith("/versions")] == posts_before
    # Auto-registration against a read-only registry is refused with the registry's reason.
    with pytest.raises(SchemaError, match="read-only"):
        Serde(fake.url).encode("Job", _sample("Job"), topic="hub.jobs.low")


def test_basic_auth_reaches_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSchemaRegistry(credentials=("SRKEY", "SRSECRET"))
    try:
        record = _sample("DeliveryStatus")
        with pytest.raises(SchemaError, match="401"):
            Serde(fake.url).encode("DeliveryStatus", record, topic="hub.delivery-status")
        settings = _settings(
            monkeypatch,
            HUB_SCHEMA_REGISTRY_URL=fake.url,
            HUB_SCHEMA_REGISTRY_BASIC_AUTH="SRKEY:SRSECRET",
            HUB_KAFKA_BOOTSTRAP="k:1",
        )
        data = Serde(settings.registry_config()).encode(
            "DeliveryStatus", record, topic="hub.delivery-status"
        )
        assert data[:1] == b"\x00"
        assert "hub.delivery-status-value" in fake.state.subjects
    finally:
        fake.stop()


def test_registry_settings_reach_the_client_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "bootstrap.servers=k:9092\nschema.registry.url=https://psrc.example\n"
        "basic.auth.credentials.source=USER_INFO\nbasic.auth.user.info=K:S\n"
    )
    settings = _settings(
        monkeypatch,
        HUB_KAFKA__PROPERTIES_FILE=str(path),
        HUB_SCHEMA_REGISTRY_SSL_CA_LOCATION="/etc/ca.pem",
        HUB_SCHEMA_REGISTRY_PROPERTIES__CACHE_LATEST_TTL_SEC="60",
    )
    assert settings.registry_config() == {
        "url": "https://psrc.example",
        "basic.auth.user.info": "K:S",
        "ssl.ca.location": "/etc/ca.pem",
        "cache.latest.ttl.sec": "60",
        "auto.register.schemas": True,
    }
    bearer = _settings(
        monkeypatch,
        HUB_SCHEMA_REGISTRY_URL="https://sr",
        HUB_SCHEMA_REGISTRY_BEARER_TOKEN="tok",
        HUB_SCHEMA_REGISTRY_BEARER_LOGICAL_CLUSTER="lsrc-1",
    ).registry_config()
    assert bearer is not None
    assert (bearer["bearer.auth.credentials.source"], bearer["bearer.auth.token"]) == (
        "STATIC_TOKEN",
        "tok",
    )
    assert _settings(monkeypatch).registry_config() is None


def test_an_unreachable_registry_is_retryable() -> None:
    from pim_hub.devstack.embedded import free_port

    serde = Serde({"url": f"http://127.0.0.1:{free_port()}", "max.retries": 0})
    with pytest.raises(RetryableError, match="unreachable"):
        serde.encode("Mutation", _sample("Mutation"), topic="hub.mutations")


def test_hub_schemas_commands(fake: FakeSchemaRegistry) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
        "HUB_SCHEMA_REGISTRY_URL": fake.url,
        "HUB_LOG_LEVEL": "ERROR",
    }

    def hub(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pim_hub", "schemas", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    registered = hub("register", "--level", "full_transitive")
    assert registered.returncode == 0, registered.stderr
    assert "ok    hub.mutations-value: Mutation v1=id" in registered.stdout
    checked = hub("check")
    assert checked.returncode == 0, checked.stderr
    assert "ok    Mutation v1: the only released version" in checked.stdout
    assert "ok    pim.snapshots-value: Snapshot is registered" in checked.stdout
    wrong = hub("check", "--level", "SIDEWAYS")
    assert wrong.returncode == 2 and "unknown compatibility level" in wrong.stderr
