"""Rejected snapshots seen and fixed with `hub` commands: produce, invalid list|show|redrive,
trace and the mutator's log line, on the running pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import TopicPartition
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import make_producer, produce_sync
from pim_hub.runtime.logread import ephemeral_consumer, log_bounds, partitions_of
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from tests.integration.test_replay_ops import product, version

pytestmark = pytest.mark.integration

REASON = "'enabled' must be bool"


def _hub(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def _ends(settings: Settings, topic: str) -> dict[int, int]:
    consumer = ephemeral_consumer(settings, "test-invalid")
    try:
        bounds = log_bounds(consumer, [(topic, p) for p in partitions_of(consumer, topic)])
        return {p: hi for (_, p), (_, hi) in bounds.items()}
    finally:
        consumer.close()


def _keys_after(settings: Settings, topic: str, starts: dict[int, int]) -> list[str]:
    """Keys of the records written to topic after the recorded offsets."""
    consumer = ephemeral_consumer(settings, "test-invalid")
    keys: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, off) for p, off in starts.items()])
        while True:
            batch = consumer.consume(500, 2.0)
            if not batch:
                return keys
            keys += [(m.key() or b"").decode() for m in batch if m.error() is None]
    finally:
        consumer.close()


def test_rejected_snapshots_are_visible_and_can_be_fixed(
    pipeline: Supervisor,
    hub_env: dict[str, str],
    hub_settings: Settings,
    tmp_path: Path,
    unique: str,
) -> None:
    uuid = f"{unique[:8]}-0000-4000-8000-000000000001"
    key = f"product:{uuid}"
    bad = {**product(uuid, "Broken", version(9)), "enabled": "yes"}
    bad_file = tmp_path / "bad.json"
    bad_file.write_bytes(orjson.dumps(bad))

    # The CLI checks types as the mutator does, and publishes nothing.
    refused = _hub(hub_env, "produce", "snapshot", str(bad_file))
    assert refused.exit_code == 2, refused.output
    assert REASON in refused.output and "would refuse" in refused.output

    # An outside producer publishes it anyway: the mutator sets it aside with its reason.
    snapshots_before = _ends(hub_settings, topics.SNAPSHOTS)
    record = snapshot_record("product", key, bad, version(9), "external")
    produce_sync(
        make_producer(hub_settings),
        topics.SNAPSHOTS,
        Serde().encode("Snapshot", record),
        key=key,
    )

    def listed() -> list[dict[str, Any]]:
        out = _hub(hub_env, "invalid", "list", "--key", key, "--output", "json")
        assert out.exit_code == 0, out.output
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        return rows

    wait_for(
        lambda: len(listed()) == 1, timeout=120, what="the set-aside snapshot", supervisor=pipeline
    )
    [row] = listed()
    assert row["key"] == key and row["kind"] == "snapshot" and row["entity_type"] == "product"
    assert row["error_type"] == "invalid_snapshot" and REASON in row["reason"]
    assert row["code"] == "invalid"
    # Only the CLI-refused file never reached the broker: one snapshot was published.
    assert sum(_ends(hub_settings, topics.SNAPSHOTS).values()) >= sum(snapshots_before.values()) + 1

    table = _hub(hub_env, "invalid", "list", "--key", key)
    assert row["id"] in table.stdout and REASON in table.stdout

    shown = _hub(hub_env, "invalid", "show", row["id"])
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert detail["snapshot"]["payload"]["enabled"] == "yes"
    assert detail["headers"]["error.type"] == "invalid_snapshot"
    assert _hub(hub_env, "invalid", "show", "nope").exit_code == 2

    # The mutator's log names the key and the reason.
    mutator_log = next(s for s in pipeline.services if s.name == "mutator").log_path
    lines = [
        json.loads(line)
        for line in mutator_log.read_text(errors="replace").splitlines()
        if line.startswith("{") and key in line
    ]
    assert any(
        entry.get("entity_key") == key and REASON in entry.get("reason", "") for entry in lines
    ), lines

    # `hub trace` shows the refusal with its reason.
    traced = _hub(hub_env, "trace", key, "--json")
    assert traced.exit_code == 0, traced.output
    refusals = [e for e in json.loads(traced.stdout)["timeline"] if e["stage"] == "invalid"]
    assert len(refusals) == 1 and REASON in refusals[0]["reason"]

    # Redriving it unchanged is refused (nothing published); with the fix it goes through.
    again = _hub(hub_env, "invalid", "redrive", row["id"])
    assert again.exit_code == 2 and REASON in again.output
    fixed_file = tmp_path / "fixed.json"
    fixed_file.write_bytes(orjson.dumps({**bad, "enabled": True}))
    mutations_before = _ends(hub_settings, topics.MUTATIONS)
    done = _hub(hub_env, "invalid", "redrive", row["id"], "--payload", str(fixed_file))
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"published {key} to {topics.SNAPSHOTS}")
    wait_for(
        lambda: key in _keys_after(hub_settings, topics.MUTATIONS, mutations_before),
        timeout=120,
        what="the mutation of the fixed snapshot",
        supervisor=pipeline,
    )


def test_rows_a_projector_set_aside_are_listed_with_their_reason(
    hub_env: dict[str, str], database_url: str, unique: str
) -> None:
    stage = f"projector.test-{unique}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        for offset in (3, 4):
            conn.execute(
                'INSERT INTO set_aside_records (stage, topic, partition, "offset", record_key,'
                " reason, message) VALUES (%s, 'hub.mutations', 1, %s, %s, 'data_error', %s)",
                (stage, offset, f"product:{unique}", f"value out of range {offset}"),
            )
    listed = _hub(hub_env, "invalid", "rows", "--stage", stage, "--output", "json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["offset"] for r in rows] == [4, 3]
    assert rows[0]["reason"] == "data_error" and rows[0]["message"] == "value out of range 4"
    table = _hub(hub_env, "invalid", "rows", "--stage", stage)
    assert "hub.mutations[1]@4" in table.stdout and "data_error" in table.stdout
