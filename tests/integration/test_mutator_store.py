"""The RocksDB table store: a SIGKILLed mutator restarted on its data dir keeps its state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import rocksdict
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pim_hub.devstack import embedded as runtime
from pim_hub.devstack.supervisor import Service, Supervisor
from pim_hub.runtime.kafka import apply_topics, consumer_config, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde

pytestmark = pytest.mark.integration

V1 = "2024-05-01T10:00:00+00:00"
V2 = "2024-05-02T10:00:00+00:00"
V3 = "2024-05-03T10:00:00+00:00"
PRODUCTS = 2000


@pytest.fixture(scope="module")
def broker_settings() -> Iterator[Settings]:
    """A broker of this module's own.

    The session's pipeline mutator reads pim.snapshots too and emits the same mutation ids:
    on a shared broker a mutation this worker lost would be hidden by that one's copy.
    """
    broker = runtime.start_tansu()
    try:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        apply_topics(settings)
        yield settings
    finally:
        broker.stop()


def _product(uid: str, colour: str, version: str) -> dict[str, Any]:
    return {
        "uuid": uid,
        "identifier": f"SKU-{uid[-8:]}",
        "enabled": True,
        "family": "shoes",
        "categories": ["men"],
        "values": {
            "sku": [{"locale": None, "scope": None, "data": f"SKU-{uid[-8:]}"}],
            "color": [{"locale": None, "scope": None, "data": colour}],
            "description": [
                {"locale": "en_US", "scope": None, "data": f"A shoe {uid} " * 20},
            ],
        },
        "updated": version,
    }


class Mutations:
    """Every hub.mutations record, decoded, from the start of the log."""

    def __init__(self, settings: Settings) -> None:
        self.serde = Serde()
        self.consumer = Consumer(consumer_config(settings, f"test.store.{uuid.uuid4().hex[:8]}"))
        # Assigned, not subscribed: reading starts at once, with no group to join first (a
        # join took longer than a quick worker needed for the whole stream).
        meta = self.consumer.list_topics(topics.MUTATIONS, timeout=10)
        self.consumer.assign(
            [
                TopicPartition(topics.MUTATIONS, p, OFFSET_BEGINNING)
                for p in meta.topics[topics.MUTATIONS].partitions
            ]
        )
        self.seen: list[dict[str, Any]] = []

    def poll(self, seconds: float, sup: Supervisor) -> None:
        """Read what arrives within seconds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._consume(0.3, sup)

    def _consume(self, wait: float, sup: Supervisor) -> None:
        sup.check()
        for msg in self.consumer.consume(500, wait):
            if msg.error() is None:
                self.seen.append(self.serde.decode("Mutation", msg.value()))

    def wait_for(self, what: Any, timeout: float, sup: Supervisor) -> None:
        """Read until what(self) is true, looking after every read (a kill must land early)."""
        deadline = time.monotonic() + timeout
        while not what(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; {len(self.seen)} mutations seen")
            self._consume(0.05, sup)

    def distinct(self) -> dict[str, dict[str, Any]]:
        """Mutations by id: at-least-once reading may re-emit one (same id), never another."""
        return {m["mutation_id"]: m for m in self.seen}

    def close(self) -> None:
        """Close the reader."""
        self.consumer.close()


def _start(sup: Supervisor) -> Service:
    return sup.start("mutator", "mutator")


def _ids(by_key: dict[str, list[dict[str, Any]]]) -> set[str]:
    return {m["mutation_id"] for got in by_key.values() for m in got}


def test_a_killed_rocksdb_mutator_restarts_with_its_state(
    broker_settings: Settings, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    app_id = f"test-mutator-store-{uuid.uuid4().hex[:8]}"
    sup = Supervisor(
        env={
            "HUB_KAFKA_BOOTSTRAP": broker_settings.bootstrap,
            "HUB_MUTATOR_APP_ID": app_id,
            "HUB_MUTATOR_DATA_DIR": str(data_dir),
            "HUB_MUTATOR_STORE": "rocksdb",
            "HUB_LOG_LEVEL": "INFO",
        },
        log_dir=tmp_path / "logs",
    )
    serde = Serde()
    producer = make_producer(broker_settings)
    uids = [str(uuid.UUID(int=(7 << 64) + i)) for i in range(PRODUCTS)]
    keys = [f"product:{uid}" for uid in uids]

    def publish(key: str, payload: dict[str, Any], version: str) -> None:
        record = snapshot_record("product", key, payload, version, "external")
        producer.produce(topics.SNAPSHOTS, serde.encode("Snapshot", record), key=key)
        producer.poll(0)

    # A create and then an update of every product, all queued before the worker starts.
    for key, uid in zip(keys, uids, strict=True):
        publish(key, _product(uid, "red", V1), V1)
    for key, uid in zip(keys, uids, strict=True):
        publish(key, _product(uid, "blue", V2), V2)
    assert producer.flush(60) == 0

    mutations = Mutations(broker_settings)
    try:
        worker = _start(sup)
        # SIGKILL mid-stream: some creates are out, their state written, offsets maybe not.
        # Early: a worker writes hundreds of mutations in the time the reader takes to see one.
        mutations.wait_for(lambda m: len(m.distinct()) >= PRODUCTS // 10, 180, sup)
        sup.kill(worker)
        assert len(mutations.distinct()) < 2 * PRODUCTS, "killed too late to test anything"
        worker = _start(sup)
        mutations.wait_for(lambda m: len(m.distinct()) >= 2 * PRODUCTS, 180, sup)
        # Whatever a late duplicate or a wrong extra mutation would be, it is out by now.
        mutations.poll(3.0, sup)

        by_key: dict[str, list[dict[str, Any]]] = {}
        for mutation in mutations.distinct().values():
            by_key.setdefault(mutation["entity_key"], []).append(mutation)
        assert sorted(by_key) == sorted(keys)
        for key, got in by_key.items():
            # Exactly the create and the colour update: a state lost in the crash would have
            # made the update a second create (another id) or a change of every attribute.
            assert sorted((m["operation"], m["version"]) for m in got) == [
                ("create", V1),
                ("update", V2),
            ], key
            update = next(m for m in got if m["operation"] == "update")
            assert [(c["attribute"], orjson.loads(c["new"])) for c in update["changes"]] == [
                ("color", "blue")
            ], key

        # Once more, killed after it caught up: the state must come back from its data dir.
        sup.kill(worker)
        seen = len(mutations.seen)
        worker = _start(sup)
        # The same V2 snapshots again (a re-sync): unchanged, so no mutation; then a marker.
        for key, uid in zip(keys, uids, strict=True):
            publish(key, _product(uid, "blue", V2), V2)
        publish(keys[0], _product(uids[0], "green", V3), V3)
        assert producer.flush(60) == 0
        mutations.wait_for(lambda m: any(x["version"] == V3 for x in m.seen[seen:]), 180, sup)
        mutations.poll(2.0, sup)
        known = _ids(by_key)
        fresh = [m for m in mutations.seen[seen:] if m["mutation_id"] not in known]
        assert [(m["entity_key"], m["operation"], m["version"]) for m in fresh] == [
            (keys[0], "update", V3)
        ]
        sup.stop(worker)
    finally:
        sup.stop_all()
        mutations.close()

    # The state is on disk, under this app id, in the one worker slot a lone worker takes.
    dbs = sorted((data_dir / app_id / "worker-0").glob("entity-state-*.db"))
    assert dbs, list(data_dir.rglob("*"))
    stored: dict[bytes, dict[str, Any]] = {}
    for path in dbs:
        db = rocksdict.Rdict(
            str(path),
            options=rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        try:
            # raw_mode: keys and values are the bytes Faust wrote (the stubs say str).
            for db_key, db_value in db.items():
                raw_key = bytes(db_key)  # type: ignore[arg-type]
                if not raw_key.startswith(b"__faust"):
                    stored[raw_key] = orjson.loads(db_value)
        finally:
            db.close()
    assert sorted(stored) == sorted(k.encode() for k in keys)
    # The last state of each: V3 for the marked product, V2 for the others.
    assert {k: v["v"] for k, v in stored.items()} == {
        k.encode(): V3 if k == keys[0] else V2 for k in keys
    }
