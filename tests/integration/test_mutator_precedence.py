"""Live before bulk in the mutator: pim.snapshots goes ahead of pim.snapshots.bulk.

A catalogue load (`hub sync`) writes pim.snapshots.bulk; webhooks and patches write
pim.snapshots. The mutator takes a live snapshot before a backlog of bulk ones, and between
the two topics the version check keeps the newest state: an older bulk snapshot read after a
newer live one is stale.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import ordering, topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from tests.integration.test_mutator import Topic, _product

pytestmark = pytest.mark.integration

V1 = "2024-05-01T10:00:00+00:00"
V2 = "2024-05-02T10:00:00+00:00"
V3 = "2024-05-03T10:00:00+00:00"
V4 = "2024-05-04T10:00:00+00:00"
#: bulk snapshots (new products) queued ahead of the live one
BACKLOG = 4_000


@pytest.fixture
def mutations(hub_settings: Settings) -> Any:
    reader = Topic(hub_settings, topics.MUTATIONS)
    yield reader
    reader.close()


def _snapshot(serde: Serde, key: str, name: str, version: str, extra: int = 0) -> bytes:
    uid = key.split(":", 1)[1]
    payload = _product(uid, f"SKU-{uid[-12:]}", name, version)
    for n in range(extra):  # text attributes: a product of a realistic size
        payload["values"][f"text_{n}"] = [
            {"locale": "en_US", "scope": None, "data": f"{name} text {n} " * 4}
        ]
    return serde.encode("Snapshot", snapshot_record("product", key, payload, version, "external"))


def _key(unique: str, n: int) -> str:
    return f"product:00000000-0000-4000-{8000 + n}-{unique:0>12}"[:44]


def _wait(
    reader: Topic, key: str, pipeline: Supervisor, done: Any, timeout: float = 90
) -> list[Any]:
    """The messages of `key` on the topic once `done(messages)` holds (or at the timeout)."""
    deadline = time.monotonic() + timeout
    mine: list[Any] = []
    while time.monotonic() < deadline:
        mine = reader.poll_for(key, 10**6, 0.5, pipeline)
        if done(mine):
            break
    return mine


def _decoded(reader: Topic, msgs: list[Any]) -> list[dict[str, Any]]:
    return [reader.serde.decode("Mutation", m.value()) for m in msgs]


def _started(
    settings: Settings, mutations: Topic, pipeline: Supervisor, key: str, linger_ms: int
) -> Producer:
    """A producer, once the mutator has turned a first snapshot (of `key`) into a mutation."""
    producer = make_producer(settings, **{"linger.ms": linger_ms})
    producer.produce(topics.SNAPSHOTS, _snapshot(Serde(), key, "Warm", V1), key.encode())
    producer.flush(30)
    assert _wait(mutations, key, pipeline, bool), "the mutator did not start"
    return producer


def _load(producer: Producer, records: Iterable[tuple[str, bytes]]) -> None:
    """Bulk snapshots (key, value), written as fast as the producer takes them."""
    for key, value in records:
        while True:
            try:
                producer.produce(topics.SNAPSHOTS_BULK, value, key.encode())
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def test_a_live_snapshot_goes_before_a_backlog_of_bulk_snapshots(
    pipeline: Supervisor, hub_settings: Settings, mutations: Topic, unique: str
) -> None:
    serde = Serde()
    producer = _started(hub_settings, mutations, pipeline, _key(unique, 0), linger_ms=50)

    # A load: new products, encoded beforehand so they reach the broker faster than the
    # mutator turns them into mutations, and a backlog builds up.
    backlog = [f"product:{uuid.uuid4()}" for _ in range(BACKLOG)]
    records = [_snapshot(serde, key, f"Bulk {n}", V1, extra=40) for n, key in enumerate(backlog)]
    _load(producer, zip(backlog, records, strict=True))
    # Written after the whole backlog.
    live = _key(unique, 1)
    producer.produce(topics.SNAPSHOTS, _snapshot(serde, live, "Live", V1), live.encode())
    producer.flush(30)

    live_msgs = _wait(mutations, live, pipeline, bool, timeout=120)
    assert live_msgs, "the live snapshot was not processed"
    live_at = live_msgs[0].timestamp()[1]
    wanted = {k.encode() for k in backlog}
    deadline = time.monotonic() + 240
    done: dict[bytes, int] = {}
    while len(done) < len(wanted) and time.monotonic() < deadline:
        mutations.poll_for(live, 10**6, 0.5, pipeline)
        done = {m.key(): m.timestamp()[1] for m in mutations.seen if m.key() in wanted}
    assert len(done) == len(wanted), "the backlog was not processed"
    after = sum(1 for at in done.values() if at > live_at)
    # The live snapshot's mutation came out while most of the backlog ahead of it still
    # waited: it did not queue behind the load.
    assert after >= BACKLOG // 2, f"only {after} of {BACKLOG} bulk mutations after the live one"
    assert [m["operation"] for m in _decoded(mutations, live_msgs)] == ["create"]


@pytest.mark.parametrize("bulk_first", [False, True], ids=["live-then-bulk", "bulk-then-live"])
def test_an_older_bulk_snapshot_never_overwrites_a_newer_live_one(
    pipeline: Supervisor,
    hub_settings: Settings,
    mutations: Topic,
    unique: str,
    bulk_first: bool,
) -> None:
    serde = Serde()
    producer = make_producer(hub_settings)
    key = _key(unique, 5)
    producer.produce(topics.SNAPSHOTS, _snapshot(serde, key, "Runner", V1), key.encode())
    producer.flush(30)
    assert _wait(mutations, key, pipeline, bool)

    live = (topics.SNAPSHOTS, _snapshot(serde, key, "Runner 3", V3), key.encode())
    bulk = (topics.SNAPSHOTS_BULK, _snapshot(serde, key, "Runner 2", V2), key.encode())
    for record in (bulk, live) if bulk_first else (live, bulk):
        producer.produce(*record)
        producer.flush(30)
    assert _wait(mutations, key, pipeline, lambda ms: V3 in _versions(mutations, ms))
    # Give a late bulk snapshot its chance, then a marker behind everything.
    time.sleep(2)
    producer.produce(topics.SNAPSHOTS, _snapshot(serde, key, "Runner 4", V4), key.encode())
    producer.flush(30)
    got = _decoded(
        mutations, _wait(mutations, key, pipeline, lambda ms: V4 in _versions(mutations, ms))
    )
    versions = [m["version"] for m in got]
    assert versions[-1] == V4
    # Versions only ever grow: V2, if it came at all, came before V3.
    assert versions == sorted(versions) and V3 in versions
    names = [orjson.loads(c["old"]) for c in got[-1]["changes"] if c["attribute"] == "name"]
    assert names == ["Runner 3"], "the state before the marker is the live V3, not the bulk V2"


def _versions(reader: Topic, msgs: list[Any]) -> list[str]:
    return [m["version"] for m in _decoded(reader, msgs)]


#: bulk snapshots of the load that live updates race against
RACED_BACKLOG = 1_500
#: every how many bulk mutations seen, a live update of the next entities of the load
RACE_EVERY = 25


def test_live_updates_racing_a_load_keep_each_entity_in_order(
    pipeline: Supervisor, hub_settings: Settings, mutations: Topic, unique: str
) -> None:
    """Live updates of entities the load is turning into mutations at that moment.

    A bulk part releases the gate before its acknowledgements (precedence.py), so a live batch
    may meet an entity the part has sent and not yet written: it waits for that part and
    decides on the state it wrote. Whatever the timing, each entity's mutations come in
    version order, each names the one before it, and the update's old values are the load's.
    """
    serde = Serde()
    producer = _started(hub_settings, mutations, pipeline, _key(unique, 9), linger_ms=20)

    backlog = [f"product:{uuid.uuid4()}" for _ in range(RACED_BACKLOG)]
    position = {key.encode(): n for n, key in enumerate(backlog)}
    _load(
        producer,
        ((k, _snapshot(serde, k, f"Bulk {n}", V1, extra=20)) for n, k in enumerate(backlog)),
    )

    # Follow the load: every RACE_EVERY bulk mutations, update the entities just behind the
    # last one seen, which the mutator is processing or about to.
    raced: set[str] = set()
    seen = 0
    deadline = time.monotonic() + 240
    while seen < RACED_BACKLOG and time.monotonic() < deadline:
        pipeline.check()
        for msg in mutations.consumer.consume(200, 0.1):
            if msg.error() is not None:
                continue
            mutations.seen.append(msg)
            at = position.get(msg.key() or b"")
            if at is None:
                continue
            seen += 1
            if seen % RACE_EVERY == 0:
                for ahead in (1, 2, 3):
                    if at + ahead < RACED_BACKLOG and backlog[at + ahead] not in raced:
                        key = backlog[at + ahead]
                        raced.add(key)
                        live = _snapshot(serde, key, f"Live {at + ahead}", V2, extra=20)
                        producer.produce(topics.SNAPSHOTS, live, key.encode())
                producer.poll(0)
    producer.flush(30)
    assert seen >= RACED_BACKLOG - len(raced), "the load was not processed"
    assert len(raced) >= 30

    for key in raced:
        got = _decoded(
            mutations, _wait(mutations, key, pipeline, lambda ms: V2 in _versions(mutations, ms))
        )
        versions = [m["version"] for m in got]
        assert versions in ([V2], [V1, V2]), f"{key}: {versions}"
        n = backlog.index(key)
        if versions == [V1, V2]:
            create, update = got
            assert (create["operation"], update["operation"]) == ("create", "update")
            names = [
                (orjson.loads(c["old"]), orjson.loads(c["new"]))
                for c in update["changes"]
                if c["attribute"] == "name"
            ]
            assert names == [(f"Bulk {n}", f"Live {n}")], key
            msgs = [m for m in mutations.seen if m.key() == key.encode()]
            prev = ordering.prev_mutation(msgs[1].headers())
            assert prev is not None and prev[0] == create["mutation_id"], key
        else:
            assert got[0]["operation"] == "create"
