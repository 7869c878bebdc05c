"""Missing dispatchers on the real broker: coverage of groups, `hub integrations dispatchers`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.devstack.stack import wait_for
from pim_hub.ops.dispatchers import DispatcherNeed, coverage
from pim_hub.runtime.kafka import admin_client, make_producer
from pim_hub.runtime.settings import Settings

pytestmark = pytest.mark.integration


def _topic_with_records(settings: Settings, name: str, per_partition: list[int]) -> None:
    admin = admin_client(settings)
    admin.create_topics([NewTopic(name, num_partitions=len(per_partition))])[name].result(30)
    wait_for(lambda: name in admin.list_topics(timeout=10).topics, timeout=30, what=f"topic {name}")
    producer = make_producer(settings)
    for partition, count in enumerate(per_partition):
        for i in range(count):
            producer.produce(name, value=b"job", key=f"k{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def test_a_group_that_never_consumed_is_missing_until_it_commits(
    hub_settings: Settings, unique: str
) -> None:
    topic = f"test.jobs.coverage.{unique}"
    _topic_with_records(hub_settings, topic, [3, 2])
    need = DispatcherNeed(f"nodriver{unique}", "normal", topic, ("shop",))
    [before] = coverage(hub_settings, [need])
    assert before.error is None
    assert before.partitions == 2 and before.committed_partitions == 0
    assert before.uncovered == 5 and before.missing and before.state == "missing"

    # A dispatcher of that group consumes partition 0 up to one record before its end.
    consumer = Consumer(
        hub_settings.kafka_config({"group.id": need.group, "enable.auto.commit": False})
    )
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    finally:
        consumer.close()
    [after] = coverage(hub_settings, [need])
    assert after.committed_partitions == 1 and not after.missing
    assert after.lag == 1 and after.uncovered == 2 and after.state == "behind"


def test_cli_lists_the_dispatchers_an_integration_needs(
    hub_env: dict[str, str], hub_settings: Settings, unique: str
) -> None:
    env = {**hub_env, "HUB_LOG_FORMAT": "text", "HUB_LOG_LEVEL": "WARNING"}
    integ = f"hook-{unique}"
    config = json.dumps({"url": "http://127.0.0.1:9/hook"})
    runner = CliRunner()
    add = ["integrations", "add", integ, "--driver", "webhook_test", "--config", config]
    added = runner.invoke(app, [*add, "--entity-types", "product"], env=env)
    assert added.exit_code == 0, added.output
    try:
        shown = runner.invoke(app, ["integrations", "show", integ], env=env)
        assert shown.exit_code == 0, shown.output
        doc: dict[str, Any] = json.loads(shown.stdout)
        # Its live jobs reach two priorities; it needs low too, for its replays and resyncs.
        assert doc["priorities"] == ["immediate", "normal"]
        assert [d["command"] for d in doc["dispatchers"]] == [
            "hub dispatcher --driver webhook_test --priority immediate",
            "hub dispatcher --driver webhook_test --priority normal",
            "hub dispatcher --driver webhook_test --priority low",
        ]
        assert all(d["state"] != "unknown" for d in doc["dispatchers"])

        listed = runner.invoke(app, ["integrations", "dispatchers", "--output", "json"], env=env)
        assert listed.exit_code == 0, listed.output
        rows = [r for r in json.loads(listed.stdout) if integ in r["integrations"]]
        assert {(r["driver"], r["priority"]) for r in rows} == {
            ("webhook_test", "immediate"),
            ("webhook_test", "normal"),
            ("webhook_test", "low"),
        }
        for row in rows:
            assert row["group"] == f"hub.dispatch.webhook_test.{row['priority']}"
            assert row["state"] in {"missing", "not started", "running", "behind"}

        table = runner.invoke(app, ["integrations", "list"], env=env)
        assert any(
            line.startswith(integ) and "priorities=immediate,normal" in line
            for line in table.stdout.splitlines()
        ), table.stdout
    finally:
        runner.invoke(app, ["integrations", "remove", integ], env=env)
