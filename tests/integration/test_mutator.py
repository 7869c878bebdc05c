"""The mutator on the real broker: order, duplicates, invalid snapshots, delta events, outputs."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import admin_client, consumer_config, make_producer, produce_sync
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.app import BatchOutput
from pim_hub.services.mutator.core import diffing

pytestmark = pytest.mark.integration

V1 = "2024-05-01T10:00:00+00:00"
V2 = "2024-05-02T10:00:00+00:00"
V3 = "2024-05-03T10:00:00+00:00"


def _product(uid: str, sku: str, name: str, updated: str, **extra: Any) -> dict[str, Any]:
    return {
        "uuid": uid,
        "identifier": sku,
        "enabled": True,
        "family": "shoes",
        "categories": ["men", "sale"],
        "values": {
            "sku": [{"locale": None, "scope": None, "data": sku}],
            "name": [{"locale": "en_US", "scope": None, "data": name}],
            "weight": [
                {
                    "locale": None,
                    "scope": None,
                    "data": {"amount": "1.5000", "unit": "KILOGRAM"},
                    "attribute_type": "pim_catalog_metric",
                }
            ],
        },
        "updated": updated,
        **extra,
    }


class Topic:
    """Reads one topic from the start with a consumer group of its own."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.serde = Serde()
        self.topic = topic
        self.consumer = Consumer(consumer_config(settings, f"test.{topic}.{uuid.uuid4().hex[:8]}"))
        self.consumer.subscribe([topic])
        self.seen: list[Any] = []

    def poll_for(self, key: str, count: int, timeout: float, pipeline: Supervisor) -> list[Any]:
        """Messages with this key, once `count` arrived (or what came within timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pipeline.check()
            for msg in self.consumer.consume(200, 0.3):
                if msg.error() is None:
                    self.seen.append(msg)
            mine = [m for m in self.seen if m.key() == key.encode()]
            if len(mine) >= count:
                return mine
        return [m for m in self.seen if m.key() == key.encode()]

    def mutations(self, key: str, count: int, timeout: float, pipeline: Supervisor) -> list[Any]:
        """Decoded mutations of one entity."""
        return [
            self.serde.decode("Mutation", m.value())
            for m in self.poll_for(key, count, timeout, pipeline)
        ]

    def close(self) -> None:
        """Leave the group."""
        self.consumer.close()


@pytest.fixture
def mutations(hub_settings: Settings) -> Any:
    reader = Topic(hub_settings, topics.MUTATIONS)
    yield reader
    reader.close()


def _publisher(settings: Settings) -> Any:
    producer = make_producer(settings)
    serde = Serde()

    def publish(
        key: str,
        payload: dict[str, Any] | None,
        version: str | None,
        *,
        delta: list[dict[str, Any]] | None = None,
        entity_type: str = "product",
        event_id: str | None = None,
        raw: bytes | None = None,
    ) -> str:
        record = snapshot_record(entity_type, key, payload, version, "external", event_id=event_id)
        if delta is not None:
            record["delta"] = orjson.dumps(delta).decode()
        value = raw if raw is not None else serde.encode("Snapshot", record)
        produce_sync(producer, topics.SNAPSHOTS, value, key=key)
        return str(record["event_id"])

    return publish


def test_older_and_duplicate_snapshots_produce_no_mutation(
    pipeline: Supervisor, hub_settings: Settings, mutations: Topic, unique: str
) -> None:
    uid = f"00000000-0000-4000-8000-{unique:0>12}"[:36]
    key = f"product:{uid}"
    publish = _publisher(hub_settings)
    publish(key, _product(uid, f"SKU-{unique}", "Runner", V1), V1)
    publish(key, _product(uid, f"SKU-{unique}", "Runner 3", V3), V3)
    # Delivered late: older than what the mutator holds, so ignored.
    publish(key, _product(uid, f"SKU-{unique}", "Runner 2", V2), V2)
    # The same snapshot twice (a re-sync, a re-delivered webhook) and the same content with
    # another event id: nothing new.
    event = publish(key, _product(uid, f"SKU-{unique}", "Runner 3", V3), V3)
    publish(key, _product(uid, f"SKU-{unique}", "Runner 3", V3), V3, event_id=event)
    # A marker after them: once its mutation is out, the ones before were all processed.
    publish(key, _product(uid, f"SKU-{unique}", "Runner 4", "2024-05-04T10:00:00+00:00"), None)

    got = mutations.mutations(key, 3, 60, pipeline)
    time.sleep(1.0)
    got = mutations.mutations(key, 99, 1, pipeline)
    assert [m["operation"] for m in got] == ["create", "update", "update"]
    names = [
        [orjson.loads(c["new"]) for c in m["changes"] if c["attribute"] == "name"] for m in got
    ]
    assert names == [["Runner"], ["Runner 3"], ["Runner 4"]]
    assert [m["version"] for m in got[:2]] == [V1, V3]
    assert len({m["mutation_id"] for m in got}) == 3


def test_invalid_snapshots_go_aside_with_a_reason_and_the_mutator_goes_on(
    pipeline: Supervisor, hub_settings: Settings, mutations: Topic, unique: str
) -> None:
    invalid = Topic(hub_settings, topics.SNAPSHOTS_INVALID)
    try:
        publish = _publisher(hub_settings)
        bad_type = f"product:{unique}-enabled"
        payload = {"identifier": f"{unique}-enabled", "enabled": "yes", "updated": V1}
        publish(bad_type, payload, V1)
        not_avro = f"product:{unique}-garbage"
        publish(not_avro, None, None, raw=b"{not avro at all")
        unknown = f"spaceship:{unique}"
        publish(unknown, {"code": unique}, V1, entity_type="spaceship")
        no_identity = f"category:{unique}-nocode"
        publish(no_identity, {"parent": "master"}, V1, entity_type="category")
        good = f"category:{unique}"
        publish(
            good,
            {"code": unique, "parent": "master", "labels": {"en_US": "X"}},
            V1,
            entity_type="category",
        )

        ok = mutations.mutations(good, 1, 60, pipeline)
        assert [m["operation"] for m in ok] == ["create"]
        reasons = {}
        for key in (bad_type, not_avro, unknown, no_identity):
            msgs = invalid.poll_for(key, 1, 20, pipeline)
            assert len(msgs) == 1, key
            headers = dict(msgs[0].headers() or [])
            assert headers["error.type"] == b"invalid_snapshot"
            reasons[key] = headers["error.message"].decode()
        assert "enabled" in reasons[bad_type]
        assert "Avro" in reasons[not_avro] or "header" in reasons[not_avro]
        assert "spaceship" in reasons[unknown]
        assert "code" in reasons[no_identity]
        assert mutations.poll_for(bad_type, 1, 0.5, pipeline) == []
    finally:
        invalid.close()


def test_a_delta_event_produces_the_mutation_a_full_snapshot_would(
    pipeline: Supervisor, hub_settings: Settings, mutations: Topic, unique: str
) -> None:
    uid = f"00000000-0000-4000-9000-{unique:0>12}"[:36]
    key = f"product:{uid}"
    before = _product(uid, f"SKU-{unique}", "Runner", V1)
    after = _product(
        uid, f"SKU-{unique}", "Runner 2", V2, enabled=False, categories=["men", "winter"]
    )
    after["values"]["weight"][0]["data"] = {"amount": "2", "unit": "KILOGRAM"}
    delta = [
        {
            "enabled": {"previous": True, "new": False},
            "categories": {"added": ["winter"], "removed": ["sale"]},
            "values": {
                "name": [
                    {"locale": "en_US", "scope": None, "previous": "Runner", "new": "Runner 2"}
                ],
                "weight": [
                    {
                        "locale": None,
                        "scope": None,
                        "type": "pim_catalog_metric",
                        "previous": {"amount": "1.5000", "unit": "KILOGRAM"},
                        "new": {"amount": "2", "unit": "KILOGRAM"},
                    }
                ],
            },
        }
    ]
    publish = _publisher(hub_settings)
    publish(key, before, V1)
    publish(key, None, V2, delta=delta)

    got = mutations.mutations(key, 2, 60, pipeline)
    assert [m["operation"] for m in got] == ["create", "update"]
    expected = diffing.decide(
        "product", key, diffing.decide("product", key, None, before, V1).new_state, after, V2
    )
    update = got[1]
    assert update["mutation_id"] == expected.mutation_id
    assert update["changes"] == [diffing.change_to_record(c) for c in expected.changes]
    assert orjson.loads(update["state"]) == expected.state_payload
    assert {c["field"] for c in update["changes"]} == {"enabled", "categories", "values"}


def test_outputs_go_to_the_partition_faust_would_choose(hub_settings: Settings) -> None:
    name = f"test.mutator-output.{uuid.uuid4().hex[:8]}"
    admin = admin_client(hub_settings)
    for future in admin.create_topics([NewTopic(name, 6, 1)]).values():
        future.result(timeout=30)
    keys = [f"product:{uuid.uuid4()}".encode() for _ in range(60)]
    out = BatchOutput(hub_settings)

    async def send() -> None:
        for key in keys:
            out.send(name, b"v", key)
        await out.acknowledged()

    asyncio.run(send())
    reader = Consumer(consumer_config(hub_settings, f"test.{uuid.uuid4().hex[:8]}"))
    reader.subscribe([name])
    got: dict[bytes | None, int | None] = {}
    deadline = time.monotonic() + 30
    try:
        while len(got) < len(keys) and time.monotonic() < deadline:
            for msg in reader.consume(100, 0.5):
                if msg.error() is None:
                    got[msg.key()] = msg.partition()
    finally:
        reader.close()
    partitions = list(range(6))
    # aiokafka's (Java's) murmur2 partitioner: what Faust's own producer did before.
    expected = {k: DefaultPartitioner()(k, partitions, partitions) for k in keys}
    assert got == expected
    assert len(set(got.values())) > 1
