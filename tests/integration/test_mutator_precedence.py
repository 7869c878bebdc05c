"""Live before bulk in the mutator: pim.snapshots goes ahead of pim.snapshots.bulk.

A catalogue load (`hub sync`) writes pim.snapshots.bulk; webhooks and patches write
pim.snapshots. The mutator takes a live snapshot before a backlog of bulk ones, and between
the two topics the version check keeps the newest state: an older bulk snapshot read after a
newer live one is stale.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest

from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
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


def test_a_live_snapshot_goes_before_a_backlog_of_bulk_snapshots(
    pipeline: Supervisor, hub_settings: Settings, mutations: Topic, unique: str
) -> None:
    serde = Serde()
    producer = make_producer(hub_settings, **{"linger.ms": 50})
    warm = _key(unique, 0)
    producer.produce(topics.SNAPSHOTS, _snapshot(serde, warm, "Warm", V1), warm.encode())
    producer.flush(30)
    assert _wait(mutations, warm, pipeline, bool), "the mutator did not start"

    # A load: new products, encoded beforehand so they reach the broker faster than the
    # mutator turns them into mutations, and a backlog builds up.
    backlog = [f"product:{uuid.uuid4()}" for _ in range(BACKLOG)]
    records = [_snapshot(serde, key, f"Bulk {n}", V1, extra=40) for n, key in enumerate(backlog)]
    for key, value in zip(backlog, records, strict=True):
        while True:
            try:
                producer.produce(topics.SNAPSHOTS_BULK, value, key.encode())
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)
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
