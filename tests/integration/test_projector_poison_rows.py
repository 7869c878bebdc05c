"""Projectors on the real PostgreSQL (and broker): a row PostgreSQL refuses is set aside, not fatal."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Message, TopicPartition

from pim_hub.devstack.stack import query, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import make_producer, produce_sync
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde
from pim_hub.services.projections.entities import EntityProjector

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, tzinfo=UTC)


class _Committer:
    """The consumer side of BatchProjector.handle: records what it would commit."""

    def __init__(self) -> None:
        self.committed: list[TopicPartition] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.committed.extend(offsets)


def _mutation(key: str, name: str) -> dict[str, Any]:
    state = {"uuid": key.partition(":")[2], "values": {"name": [{"data": name}]}}
    return {
        "mutation_id": str(uuid.uuid4()),
        "entity_type": "product",
        "entity_key": key,
        "operation": "create",
        "changes": [],
        "state": orjson.dumps(state).decode(),
        "version": "2024-06-01T08:00:00+00:00",
        "causation_id": "c",
        "correlation_id": None,
        "origin": "external",
        "source_received_at": T0,
        "created_at": T0,
    }


def test_the_entity_projector_sets_aside_a_mutation_postgresql_refuses(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    serde = Serde()
    projector = EntityProjector(hub_settings, group=f"test.poison.{unique}")
    nul_key = f"product:{unique}-\x00-nul"
    nul_value = f"product:{unique}-nul-in-value"
    good = f"product:{unique}-good"
    topic = f"test.poison.{unique}"
    msgs = [
        Message(topic=topic, partition=0, offset=10 + i, key=k.encode(), value=v)
        for i, (k, v) in enumerate(
            (k, serde.encode("Mutation", _mutation(k, n)))
            for k, n in ((nul_key, "a"), (nul_value, "b\x00c"), (good, "fine"))
        )
    ]
    consumer = _Committer()
    with psycopg.connect(database_url, autocommit=True) as conn:
        projector.handle(consumer, conn, msgs)  # type: ignore[arg-type]
        # Re-reading the same batch (a restart) records nothing twice.
        projector.handle(consumer, conn, msgs)  # type: ignore[arg-type]
    assert [(tp.topic, tp.partition, tp.offset) for tp in consumer.committed] == [
        (topic, 0, 13),
        (topic, 0, 13),
    ]
    assert query(database_url, "SELECT entity_key FROM entities WHERE entity_key = %s", good)
    rows = query(
        database_url,
        'SELECT stage, "offset", record_key, reason, message FROM set_aside_records'
        ' WHERE topic = %s ORDER BY "offset"',
        topic,
    )
    assert [(r["stage"], r["offset"], r["reason"]) for r in rows] == [
        ("projector.entities", 10, "data_error"),
        ("projector.entities", 11, "data_error"),
    ]
    assert rows[0]["record_key"] == f"product:{unique}-\\x00-nul"
    assert "NUL" in rows[0]["message"] or "0x00" in rows[0]["message"]
    assert "\\u0000" in rows[1]["message"] or "unicode" in rows[1]["message"].lower()


def test_the_deliveries_projector_survives_a_status_postgresql_refuses(
    pipeline: Supervisor, hub_settings: Settings, database_url: str, unique: str
) -> None:
    serde = Serde()
    producer = make_producer(hub_settings)
    bad_job, good_job = f"job-{unique}-bad", f"job-{unique}-good"
    for job_id, key in ((bad_job, f"product:{unique}\x00"), (good_job, f"product:{unique}")):
        status = {
            "job_id": job_id,
            "mutation_id": str(uuid.uuid4()),
            "integration_id": f"poison-{unique}",
            "driver": "webhook",
            "entity_key": key,
            "priority": "normal",
            "status": "delivered",
            "attempt": 1,
            "error_kind": None,
            "error_message": None,
            "target_ref": None,
            "duration_ms": 1.0,
            "source_received_at": None,
            "occurred_at": datetime.now(UTC),
        }
        # One key: both on one partition, the bad one first.
        value = serde.encode("DeliveryStatus", status, topic=topics.DELIVERY_STATUS)
        produce_sync(producer, topics.DELIVERY_STATUS, value, key=f"poison-{unique}")
    wait_for(
        lambda: query(database_url, "SELECT job_id FROM deliveries WHERE job_id = %s", good_job),
        timeout=120,
        what="the good status projected behind the bad one",
        supervisor=pipeline,
    )
    rows = query(
        database_url,
        "SELECT reason, record_key FROM set_aside_records"
        " WHERE stage = 'projector.deliveries' AND record_key = %s",
        f"poison-{unique}",
    )
    assert [r["reason"] for r in rows] == ["data_error"]
    assert not query(database_url, "SELECT 1 FROM deliveries WHERE job_id = %s", bad_job)
    time.sleep(0.2)
    pipeline.check()


def test_hub_deliveries_shows_hostile_keys_escaped(
    database_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pim_hub.cli.main import app

    integration = f"esc-{unique}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deliveries (job_id, mutation_id, integration_id, driver, entity_key,"
            " priority, status, attempt, error_kind, error_message, occurred_at)"
            " VALUES (%s, 'm', %s, 'webhook', %s, 'normal', 'dead', 1, 'http_400', %s, now())",
            (
                f"job-{unique}",
                integration,
                "product:x\r\n\x1b[2Kforged",
                "bad\x1b]0;title\x07",
            ),
        )
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    result = CliRunner().invoke(app, ["deliveries", "--integration", integration])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\x07" not in result.stdout
    assert "product:x\\r\\n\\x1b[2Kforged" in result.stdout
    assert len(result.stdout.splitlines()) == 1
    refused = CliRunner().invoke(app, ["deliveries", "--entity", "product:\x00"])
    assert refused.exit_code == 2
    assert "control character" in refused.stderr
