"""The integration registry against the real PostgreSQL and broker: CLI, validation, topic."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.devstack.stack import Timeout, wait_for
from pim_hub.drivers.discovery import discover
from pim_hub.registry.files import IntegrationSpec
from pim_hub.registry.model import Integration, IntegrationError
from pim_hub.registry.service import Registry
from pim_hub.registry.store import get_integration
from pim_hub.runtime.kafka import consumer_config
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics

pytestmark = pytest.mark.integration

SECRET = "wh-secret-do-not-print"
DB_PASSWORD = "log-dsn-password"


def read_integration_events(settings: Settings, ids: set[str], want: int) -> list[tuple[str, Any]]:
    """(key, JSON value or None) of hub.integrations records for some ids, in topic order."""
    consumer = Consumer(consumer_config(settings, f"test-registry-{min(ids)}"))
    meta = consumer.list_topics(topics.INTEGRATIONS, timeout=10).topics[topics.INTEGRATIONS]
    consumer.assign(
        [TopicPartition(topics.INTEGRATIONS, p, OFFSET_BEGINNING) for p in meta.partitions]
    )
    found: list[tuple[str, Any]] = []

    def read(timeout: float) -> int:
        msg = consumer.poll(timeout)
        if msg is not None and not msg.error():
            key = (msg.key() or b"").decode()
            if key in ids:
                value = msg.value()
                found.append((key, orjson.loads(value) if value is not None else None))
        return len(found)

    try:
        # Fewer than `want` after the wait: returned as they are, for the caller's assertion.
        with contextlib.suppress(Timeout):
            wait_for(lambda: read(0.5) >= want, timeout=20, interval=0, what=f"{want} records")
        # Anything beyond `want` would be a change published twice: read a little longer.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            read(0.2)
    finally:
        consumer.close()
    return found


@pytest.fixture
def cli_env(hub_env: dict[str, str], hub_settings: Settings) -> dict[str, str]:
    return {
        **hub_env,
        "HUB_LOG_FORMAT": "text",
        "HUB_LOG_LEVEL": "WARNING",
    }


def hub(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_manages_integrations_validates_masks_and_publishes(
    cli_env: dict[str, str],
    hub_settings: Settings,
    database_url: str,
    unique: str,
    tmp_path: Path,
) -> None:
    wh, lg = f"wh-{unique}", f"log-{unique}"
    config = {"url": "https://hooks.example.com/pim", "secret": SECRET}

    r = hub(
        cli_env, "integrations", "add", wh, "--driver", "webhook", "--config", json.dumps(config)
    )
    assert (r.exit_code, r.output.split()) == (0, ["created", wh]), r.output

    r = hub(
        cli_env, "integrations", "add", wh, "--driver", "webhook", "--config", json.dumps(config)
    )
    assert r.exit_code == 2 and "exists" in r.output

    # An invalid config is refused with every bad field, and nothing is stored.
    bad = {"url": "nope", "timeout_s": -1, "ulr": "x", "secret": SECRET}
    r = hub(
        cli_env,
        "integrations",
        "add",
        f"bad-{unique}",
        "--driver",
        "webhook",
        "--config",
        json.dumps(bad),
    )
    assert r.exit_code == 2
    for line in (
        "config.url: Input should be a valid URL",
        "config.timeout_s:",
        "config.ulr: unknown field",
    ):
        assert line in r.output
    assert SECRET not in r.output
    assert get_integration(database_url, f"bad-{unique}") is None
    r = hub(cli_env, "integrations", "add", f"bad-{unique}", "--driver", "magento9")
    assert r.exit_code == 2 and "no driver 'magento9'" in r.output

    r = hub(cli_env, "integrations", "show", wh)
    assert r.exit_code == 0, r.output
    # stdout only: stderr may carry a warning about the broker's state (jobs nobody reads).
    shown = json.loads(r.stdout)
    assert shown["config"] == {"url": config["url"], "secret": "********"}
    assert (shown["driver"], shown["enabled"], shown["revision"]) == ("webhook", True, 1)

    r = hub(
        cli_env,
        "integrations",
        "update",
        wh,
        "--config",
        '{"timeout_s": 5}',
        "--entity-types",
        "product",
    )
    assert r.output.split() == ["updated", f"{wh}:", "entity_types,", "config.timeout_s"], r.output
    stored = get_integration(database_url, wh)
    assert stored is not None
    assert stored.config == {**config, "timeout_s": 5}, "merged: the secret is kept"
    assert stored.entity_types == ["product"]

    r = hub(cli_env, "integrations", "update", wh, "--config", '{"timeout_s": -1}')
    assert r.exit_code == 2 and "config.timeout_s" in r.output
    assert get_integration(database_url, wh) == stored

    assert hub(cli_env, "integrations", "disable", wh).output.split() == [
        "updated",
        f"{wh}:",
        "enabled",
    ]
    assert hub(cli_env, "integrations", "disable", wh).output.split() == ["unchanged", wh]

    # apply: creates, updates, then nothing on a second run; a dry run changes nothing.
    env2 = {**cli_env, "TEST_LOG_DSN": f"postgresql://hub:{DB_PASSWORD}@127.0.0.1:1/none"}
    file = tmp_path / "integrations.yaml"
    file.write_text(
        f"""
integrations:
  - id: {wh}
    name: Storefront
    driver: webhook
    entity_types: [product]
    config: {{url: "https://hooks.example.com/pim", secret: "{SECRET}", timeout_s: 5}}
  - id: {lg}
    driver: log
    config: {{dsn: "${{TEST_LOG_DSN}}", include_values: false}}
    priority_map: {{attributes: {{description: immediate}}}}
"""
    )
    r = hub(env2, "integrations", "apply", str(file))
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        f"updated   {wh}: name, enabled",
        f"created   {lg}",
        "1 created, 1 updated, 0 removed, 0 unchanged",
    ]
    r = hub(env2, "integrations", "apply", str(file))
    assert r.output.splitlines()[-1] == "0 created, 0 updated, 0 removed, 2 unchanged", r.output
    file.write_text(file.read_text().replace("include_values: false", "include_values: true"))
    r = hub(env2, "integrations", "apply", "--dry-run", str(file))
    assert f"updated   {lg}: config.include_values" in r.output and "(dry run)" in r.output
    log_row = get_integration(database_url, lg)
    assert log_row is not None and log_row.config["include_values"] is False

    r = hub(env2, "integrations", "list", "--json")
    listed = {d["id"]: d for d in map(json.loads, r.output.splitlines())}
    assert listed[lg]["config"]["dsn"] == "********"
    assert DB_PASSWORD not in r.output and SECRET not in r.output

    assert hub(cli_env, "integrations", "remove", lg).output.split() == ["removed", lg]
    r = hub(cli_env, "integrations", "remove", lg)
    assert r.exit_code == 2 and f"no integration '{lg}'" in r.output

    # hub.integrations: one record per effective change, keyed by id, JSON, secrets masked,
    # and a tombstone for the removal.
    events = read_integration_events(hub_settings, {wh, lg}, want=6)
    assert [(k, v["revision"] if v else None) for k, v in events] == [
        (wh, 1),
        (wh, 2),
        (wh, 3),
        (wh, 4),
        (lg, 1),
        (lg, None),
    ]
    assert [v["enabled"] for k, v in events if k == wh] == [True, True, False, True]
    assert all(v["schema"] == "pim-hub.integration/1" for _, v in events if v)
    raw = json.dumps(events)
    assert SECRET not in raw and DB_PASSWORD not in raw
    assert events[0][1]["config"]["secret"] == "********"


class FailingPublisher:
    def publish(self, integration_id: str, event: dict[str, Any] | None) -> None:
        raise RuntimeError("broker unavailable")


def test_a_change_the_broker_refuses_is_not_saved(database_url: str, unique: str) -> None:
    registry = Registry(database_url, discover(), FailingPublisher())
    integ = Integration(
        f"nopub-{unique}", "x", "webhook", True, {"url": "https://x.example"}, None, {}
    )
    with pytest.raises(RuntimeError):
        registry.add(integ)
    assert get_integration(database_url, integ.id) is None


def test_apply_refuses_the_whole_file_when_one_integration_is_invalid(
    database_url: str, unique: str
) -> None:
    registry = Registry(database_url, discover())
    specs = [
        IntegrationSpec(id=f"ok-{unique}", driver="webhook", config={"url": "https://x.example"}),
        IntegrationSpec(id=f"ko-{unique}", driver="webhook", config={"url": 3}),
        IntegrationSpec(
            id=f"ko2-{unique}",
            driver="webhook",
            config={"url": "https://x.example"},
            priority_map={"attributes": {"price": "asap"}},
        ),
    ]
    with pytest.raises(IntegrationError) as info:
        registry.apply(specs)
    text = str(info.value)
    assert (
        "nothing applied" in text
        and "config.url" in text
        and "priority_map.attributes.price" in text
    )
    assert get_integration(database_url, f"ok-{unique}") is None

    registry.apply(specs[:1])
    changes = registry.apply([specs[0].model_copy(update={"enabled": False})])
    assert [c.line() for c in changes] == [f"updated   ok-{unique}: enabled"]

    # A pruning dry run lists what the file does not name (other tests' rows too: dry run only).
    changes = registry.apply([], prune=True, dry_run=True)
    assert f"removed   ok-{unique}" in [c.line() for c in changes]
    assert get_integration(database_url, f"ok-{unique}") is not None


def test_the_registry_records_what_each_driver_takes_for_fan_out(
    database_url: str, unique: str
) -> None:
    import asyncio

    import psycopg

    from pim_hub.registry.priority import PriorityRules
    from pim_hub.registry.store import load_targets_async
    from pim_hub.services.mutator.core.fanout import plan_jobs

    registry = Registry(database_url, discover())
    iid = f"types-{unique}"
    registry.put(
        Integration(
            id=iid,
            name=iid,
            driver="log",
            enabled=True,
            config={"dsn": database_url},
            entity_types=None,
            priority_map={},
        )
    )
    stored = get_integration(database_url, iid)
    assert stored is not None and stored.driver_entity_types is not None
    log_types = discover().get("log").supported_entity_types
    assert set(stored.driver_entity_types) == set(log_types)
    # Fan-out reads those types from the registry: no driver is imported to learn them.
    targets = {t.integration_id: t for t in asyncio.run(load_targets_async(database_url))}
    assert targets[iid].supported_entity_types == frozenset(log_types)
    # A row from before the column (NULL): every type is fanned out, and the dispatcher
    # decides; writing the row again with the driver installed records the types.
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE integrations SET driver_entity_types = NULL WHERE id = %s", (iid,))
    targets = {t.integration_id: t for t in asyncio.run(load_targets_async(database_url))}
    assert targets[iid].supported_entity_types is None
    jobs = plan_jobs("channel", "update", "m-1", [], [targets[iid]], PriorityRules())
    assert [j.integration_id for j in jobs] == [iid]
    change = registry.put(registry.get(iid))
    assert change.action == "updated" and "driver_entity_types" in change.fields
    again = get_integration(database_url, iid)
    assert again is not None and set(again.driver_entity_types or ()) == set(log_types)
