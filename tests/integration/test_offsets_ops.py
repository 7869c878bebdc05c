"""`hub offsets` on the real broker: lag, previews, resets, and refusal while members are active."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.devstack.stack import wait_for
from pim_hub.ops import offsets as offsets_mod
from pim_hub.runtime.kafka import admin_client, consumer_config
from pim_hub.runtime.settings import Settings

pytestmark = pytest.mark.integration


def _topic(settings: Settings, name: str, n: int, t0_ms: int) -> None:
    admin = admin_client(settings)
    for fut in admin.create_topics(
        [NewTopic(name, num_partitions=1, replication_factor=1)]
    ).values():
        fut.result()
    producer = Producer(settings.kafka_config({"linger.ms": 20}))
    for i in range(n):
        # two time groups 100 s apart, produced as one batch (the broker's listing is then off)
        producer.produce(
            name, key=f"k{i}", value=b"v", timestamp=t0_ms + i * 1000 + (i >= 5) * 100_000
        )
    assert producer.flush(10) == 0


def _committed(settings: Settings, group: str, topic: str) -> int:
    c = Consumer(settings.kafka_config({"group.id": group}))
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def _cli(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, ["offsets", *args], env=env)


def test_offsets_show_lag_and_refuse_a_reset_while_the_group_has_members(
    hub_settings: Settings, hub_env: dict[str, str], unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, group = f"ops-offsets-{unique}", f"ops-group-{unique}"
    t0 = int(time.time() * 1000) - 600_000
    _topic(hub_settings, topic, 10, t0)
    member = Consumer(consumer_config(hub_settings, group))
    member.subscribe([topic])
    read: list[Any] = []

    def seven_read() -> bool:
        msg = member.poll(0.5)  # the poll itself waits: no pause between tries
        if msg is not None and msg.error() is None:
            read.append(msg)
        return len(read) >= 7

    wait_for(seven_read, timeout=30, interval=0, what="7 records read by the member")
    assert len(read) == 7
    member.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)

    shown = _cli(hub_env, group, "--json")
    assert shown.exit_code == 0, shown.output
    assert '"lag": 3' in shown.output and '"end": 10' in shown.output  # the true end, not 1
    assert '"active": true' in shown.output

    refused = _cli(hub_env, group, "--reset", "earliest", "--execute")
    assert refused.exit_code == 2
    assert "refused" in refused.output and "stop its consumers" in refused.output
    assert _committed(hub_settings, group, topic) == 7

    # Even when the preview's state is stale, the coordinator refuses a non-member's commit.
    monkeypatch.setattr(offsets_mod, "group_state", lambda *_: ("EMPTY", 0))
    rows = [offsets_mod.ResetRow(topic, 0, 7, 0)]
    with pytest.raises(offsets_mod.GroupActive, match="coordinator refused"):
        offsets_mod.execute_reset(hub_settings, group, rows)
    monkeypatch.undo()
    assert _committed(hub_settings, group, topic) == 7
    member.close()

    preview = _cli(hub_env, group, "--to-datetime", _iso(t0 + 50_000))
    assert preview.exit_code == 0, preview.output
    assert "7 → 5" in preview.output and "add --execute" in preview.output
    assert _committed(hub_settings, group, topic) == 7, "a preview changes nothing"

    applied = _cli(hub_env, group, "--to-datetime", _iso(t0 + 50_000), "--execute")
    assert applied.exit_code == 0, applied.output
    assert _committed(hub_settings, group, topic) == 5
    assert _cli(hub_env, group, "--reset", "latest", "--execute").exit_code == 0
    assert _committed(hub_settings, group, topic) == 10
    assert _cli(hub_env, group, "--to-offset", "2", "--execute").exit_code == 0
    assert _committed(hub_settings, group, topic) == 2
    # kafka-consumer-groups' own flags.
    assert _cli(hub_env, group, "--shift-by", "3", "--execute").exit_code == 0
    assert _committed(hub_settings, group, topic) == 5
    assert _cli(hub_env, group, "--shift-by", "-100", "--execute").exit_code == 0
    assert _committed(hub_settings, group, topic) == 0
    assert _cli(hub_env, group, "--to-latest", "--execute").exit_code == 0
    assert _committed(hub_settings, group, topic) == 10
    assert _cli(hub_env, group, "--to-earliest", "--execute").exit_code == 0
    assert _committed(hub_settings, group, topic) == 0
    assert _cli(hub_env, group, "--to-earliest", "--to-latest").exit_code == 2


def test_offsets_of_an_unknown_group_need_a_topic(hub_env: dict[str, str], unique: str) -> None:
    result = _cli(hub_env, f"nobody-{unique}", "--reset", "earliest")
    assert result.exit_code == 2
    assert "--topic" in result.output


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
