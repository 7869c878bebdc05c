"""Enricher on the real broker: event types become snapshots; outages wait; duplicates drop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.logread import ephemeral_consumer, log_bounds, partitions_of
from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.akeneo.app import FaultConfig, create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.sandbox.akeneo.server import serve_in_thread
from pim_hub.sandbox.akeneo.webhooks import cloud_event, legacy_event
from pim_hub.services.ingest import enricher as enricher_mod
from pim_hub.services.ingest.akeneo import AkeneoClient
from pim_hub.services.ingest.dedupe import HandledEvents
from pim_hub.services.ingest.enricher import Enricher
from pim_hub.services.ingest.events import EVENT_PLATFORM, EVENTS_API, H_IGNORED, H_SOURCE
from pim_hub.services.ingest.settings import IngestSettings
from tests.integration.test_ingest_support import new_topic, read_all, snapshots

pytestmark = pytest.mark.integration

CREDS: dict[str, Any] = {"client_id": "cid", "secret": "sec", "username": "api", "password": "pw"}


@pytest.fixture
def akeneo() -> Iterator[tuple[str, Catalogue, FaultConfig]]:
    catalogue = Catalogue(120, seed=21)
    faults = FaultConfig()
    with serve_in_thread(create_app(catalogue, **CREDS, faults=faults)) as url:
        yield url, catalogue, faults


def run_enricher(
    settings: Settings, url: str, raw: str, out: str, expected: int, **client_kw: Any
) -> tuple[list[dict[str, Any]], Enricher]:
    ingest = IngestSettings(own_connection="hub_conn", enrich_batch=100)

    async def main() -> tuple[list[Any], Enricher]:
        async with AkeneoClient(url, **CREDS, backoff_base_s=0.01, **client_kw) as client:
            enricher = Enricher(
                settings,
                ingest,
                client,
                group_id=f"g.{raw}",
                topic=raw,
                output_topic=out,
                retry_base_s=0.05,
                retry_max_s=0.2,
            )
            task = asyncio.create_task(enricher.run())
            found = await asyncio.to_thread(read_all, settings, out, expected, 40.0)
            enricher.stop()
            await task
            return found, enricher

    found, enricher = asyncio.run(main())
    return snapshots([m for m in found if m.topic() == out]), enricher


def send_raw(
    producer: Producer, topic: str, kind: str | None, event: dict[str, Any], **headers: str
) -> None:
    hdrs: list[tuple[str, str | bytes | None]] = [(H_SOURCE, kind)] if kind else []
    hdrs += list(headers.items())
    producer.produce(topic, orjson.dumps(event), headers=hdrs)


def test_every_event_type_becomes_its_snapshot(hub_settings: Settings, akeneo: Any) -> None:
    url, cat, _ = akeneo
    raw, out = new_topic(hub_settings, "raw"), new_topic(hub_settings, "snap")
    p0, p1, p2, p3, p4 = (cat.product_uuid(n) for n in (0, 1, 2, 3, 4))
    # Edits made in the PIM, reported through both APIs.
    legacy_update = cat.update_product(
        p0, values={"is_new": [{"locale": None, "scope": None, "data": True}]}
    )
    legacy_remove = cat.delete_product(p1)
    model_code = next(c for c in cat.iter_model_codes())
    model_update = cat.update_product_model(
        model_code,
        values={"description": [{"locale": "en_US", "scope": "ecommerce", "data": "<p>x</p>"}]},
    )
    ep_update = cat.update_product(p2, enabled=False)
    ep_delta = cat.update_product(p3, enabled=True, categories=["master"])
    deleted_between = cat.update_product(p4, enabled=False)
    cat.delete_product(p4)  # gone before the enricher asks for it
    sub = "sub-1"
    events: list[tuple[str | None, dict[str, Any], dict[str, str]]] = [
        (EVENTS_API, legacy_event(legacy_update, event_id="L1"), {}),
        (EVENTS_API, legacy_event(legacy_remove, event_id="L2"), {}),
        (EVENTS_API, legacy_event(model_update, event_id="L3"), {}),
        (EVENT_PLATFORM, cloud_event(ep_update, subscription_id=sub, event_id="E1"), {}),
        (EVENT_PLATFORM, cloud_event(ep_delta, subscription_id=sub, delta=True, event_id="E2"), {}),
        (EVENT_PLATFORM, cloud_event(deleted_between, subscription_id=sub, event_id="E3"), {}),
        # Straight from Akeneo's Kafka destination: no hub headers at all.
        (None, cloud_event(model_update, subscription_id=sub, event_id="E4"), {}),
        (None, cloud_event(legacy_remove, subscription_id=sub, event_id="E5"), {}),
    ]
    structure: dict[str, tuple[str, dict[str, Any], str]] = {
        "E6": ("category.updated", {"category": {"code": "master"}}, "category:master"),
        "E7": ("family.updated", {"family": {"code": "shoes"}}, "family:shoes"),
        "E8": ("attribute.updated", {"attribute": {"code": "color"}}, "attribute:color"),
        "E9": (
            "attribute-option.created",
            {"attribute_option": {"code": "red", "attribute": {"code": "color"}}},
            "attribute_option:color.red",
        ),
        "E10": (
            "family-variant.updated",
            {"family_variant": {"code": "shoes_size", "family": {"code": "shoes"}}},
            "family_variant:shoes_size",
        ),
        "E11": ("category.deleted", {"category": {"code": "gone_cat"}}, "category:gone_cat"),
        "E12": ("family.updated", {"family": {"code": "no_such_family"}}, "family:no_such_family"),
    }
    for eid, (etype, data, _) in structure.items():
        event = {
            "specversion": "1.0",
            "id": eid,
            "source": "pim",
            "type": f"com.akeneo.pim.v1.{etype}",
            "time": "2030-01-01T00:00:00Z",
            "data": {**data, "author": {"identifier": "u", "type": "user"}},
        }
        events.append((EVENT_PLATFORM, event, {}))
    # Not to be published: ignored, own connection, duplicate; and one that is not JSON.
    events.append((EVENTS_API, {"action": "x"}, {H_IGNORED: "unsupported event type x"}))
    own = cloud_event(ep_update, subscription_id=sub, event_id="E-own")
    own["data"]["author"] = {"identifier": "hub_conn", "type": "api"}
    events.append((EVENT_PLATFORM, own, {}))
    events.append((EVENT_PLATFORM, cloud_event(ep_update, subscription_id=sub, event_id="E1"), {}))
    producer = make_producer(hub_settings)
    for kind, event, headers in events:
        send_raw(producer, raw, kind, event, **headers)
    producer.produce(raw, b"{broken", headers=[(H_SOURCE, EVENTS_API)])
    producer.flush(10)

    found, enricher = run_enricher(hub_settings, url, raw, out, expected=15)
    by_id = {s["event_id"]: s for s in found}
    assert len(found) == 15, sorted(by_id)
    # Full resource from the legacy event, normalised to the REST shape.
    assert by_id["L1"]["entity_key"] == f"product:{p0}"
    assert orjson.loads(by_id["L1"]["payload"]) == {**legacy_update.after}
    assert by_id["L1"]["origin"] == "webhook"
    assert by_id["L2"]["payload"] is None and by_id["L2"]["entity_key"] == f"product:{p1}"
    assert orjson.loads(by_id["L3"]["payload"])["code"] == model_code
    # Notify-only: completed from REST.
    fetched = orjson.loads(by_id["E1"]["payload"])
    assert fetched["enabled"] is False and by_id["E1"]["source_version"] == fetched["updated"]
    assert by_id["E1"]["origin"] == "event_platform"
    delta = orjson.loads(by_id["E2"]["delta"])
    assert by_id["E2"]["payload"] is None and delta[0]["categories"]["added"] == ["master"]
    assert by_id["E3"]["payload"] is None  # deleted in between: a tombstone
    assert orjson.loads(by_id["E4"]["payload"])["code"] == model_code
    assert by_id["E5"]["payload"] is None
    for eid, (_, _, key) in structure.items():
        assert by_id[eid]["entity_key"] == key
    assert orjson.loads(by_id["E10"]["payload"])["family"] == "shoes"
    assert by_id["E11"]["payload"] is None and by_id["E12"]["payload"] is None
    assert enricher.stats["ignored"] == 2 and enricher.stats["duplicate"] == 1
    assert enricher.stats["invalid"] == 1


def test_akeneo_outage_delays_but_never_drops(hub_settings: Settings, akeneo: Any) -> None:
    url, cat, faults = akeneo
    raw, out = new_topic(hub_settings, "raw"), new_topic(hub_settings, "snap")
    producer = make_producer(hub_settings)
    changes = [cat.update_product(cat.product_uuid(n), enabled=False) for n in range(10, 15)]
    for i, change in enumerate(changes):
        send_raw(
            producer,
            raw,
            EVENT_PLATFORM,
            cloud_event(change, subscription_id="s", event_id=f"O{i}"),
        )
    producer.flush(10)
    faults.fail_next(503, 6)  # more failures than one request's retries: the batch must wait
    started = time.monotonic()
    found, enricher = run_enricher(hub_settings, url, raw, out, expected=5, max_attempts=2)
    assert sorted(s["event_id"] for s in found) == [f"O{i}" for i in range(5)]
    assert all(s["payload"] is not None for s in found)
    assert enricher.stats["akeneo_retries"] >= 1
    assert not faults.scripted and time.monotonic() - started < 30


def test_duplicate_after_restart_makes_no_second_snapshot(
    hub_settings: Settings, akeneo: Any
) -> None:
    url, cat, _ = akeneo
    raw, out = new_topic(hub_settings, "raw"), new_topic(hub_settings, "snap")
    change = cat.update_product(cat.product_uuid(20), enabled=False)
    first, fresh = f"R-{uuid.uuid4().hex}", f"R-{uuid.uuid4().hex}"
    producer = make_producer(hub_settings)

    def send(event_id: str) -> None:
        event = cloud_event(change, subscription_id="s", event_id=event_id)
        # One key: the duplicate is read before the fresh event that proves it was handled.
        producer.produce(raw, orjson.dumps(event), key=b"k", headers=[(H_SOURCE, EVENT_PLATFORM)])
        producer.flush(10)

    send(first)
    found, enricher = run_enricher(hub_settings, url, raw, out, expected=1)
    assert [s["event_id"] for s in found] == [first]
    assert enricher.stats["duplicate"] == 0
    # Delivered again after the restart (the memory of the first instance is gone).
    send(first)
    send(fresh)
    found, restarted = run_enricher(hub_settings, url, raw, out, expected=2)
    assert restarted is not enricher  # a fresh memory: the duplicate is known from the database
    assert sorted(s["event_id"] for s in found) == sorted([first, fresh])
    assert restarted.stats["duplicate"] == 1 and restarted.stats["snapshot"] == 1
    with psycopg.connect(hub_settings.require_database()) as conn:
        rows = conn.execute(
            "SELECT event_id FROM ingest_handled_events WHERE consumer_group = %s",
            (f"g.{raw}",),
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted([first, fresh])


def test_claims_are_committed_only_when_confirmed(database_url: str) -> None:
    group = f"g.claims.{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        one, two = HandledEvents(database_url, group), HandledEvents(database_url, group)
        try:
            assert await one.claim(["a", "b"]) == {"a", "b"}
            # Another replica claiming an id of an open claim waits for its outcome.
            waiting = asyncio.create_task(two.claim(["b", "c"]))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await one.confirm()
            assert await waiting == {"c"}
            await two.release()  # "c" was not published: not recorded
            # A crash before the commit (the connection goes) records nothing either.
            assert await one.claim(["c", "d"]) == {"c", "d"}
            await one.close()
            assert await two.claim(["a", "c", "d"]) == {"c", "d"}
            await two.confirm()
        finally:
            await one.close()
            await two.close()

    asyncio.run(main())
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id FROM ingest_handled_events WHERE consumer_group = %s", (group,)
        ).fetchall()
    assert sorted(r[0] for r in rows) == ["a", "b", "c", "d"]


def test_enricher_prunes_ids_older_than_the_retention(
    hub_settings: Settings, database_url: str, akeneo: Any
) -> None:
    url, _, _ = akeneo
    raw = new_topic(hub_settings, "raw")
    group = f"g.{raw}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ingest_handled_events (consumer_group, event_id, handled_at) VALUES"
            " (%s, 'old', now() - interval '2 hours'), (%s, 'recent', now() - interval '10 minutes')",
            (group, group),
        )
    ingest = IngestSettings(dedupe_retention_s=3600)

    async def main() -> Enricher:
        async with AkeneoClient(url, **CREDS) as client:
            enricher = Enricher(
                hub_settings, ingest, client, group_id=group, topic=raw, prune_every_s=0.2
            )
            task = asyncio.create_task(enricher.run())
            deadline = time.monotonic() + 20
            while enricher.stats["pruned"] < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            enricher.stop()
            await task
            return enricher

    enricher = asyncio.run(main())
    assert enricher.stats["pruned"] >= 1
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id FROM ingest_handled_events WHERE consumer_group = %s", (group,)
        ).fetchall()
    assert [r[0] for r in rows] == ["recent"]


class _LosesAsyncCommits(Consumer):
    """A consumer whose commits sent without waiting never reach the broker."""

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("asynchronous", True):
            return None
        return super().commit(*args, **kwargs)


@pytest.mark.parametrize("async_commits_lost", [False, True])
def test_a_stopped_enricher_has_committed_every_event_it_handled(
    hub_settings: Settings, akeneo: Any, monkeypatch: pytest.MonkeyPatch, async_commits_lost: bool
) -> None:
    # Commits go out without waiting while it runs; the last position is waited for at stop,
    # so a restart reads none of the handled events again, even if those commits were lost.
    if async_commits_lost:
        monkeypatch.setattr(enricher_mod, "Consumer", _LosesAsyncCommits)
    url, cat, _ = akeneo
    raw, out = new_topic(hub_settings, "raw"), new_topic(hub_settings, "snap")
    producer = make_producer(hub_settings)
    for n in range(5):
        change = cat.update_product(cat.product_uuid(30 + n), enabled=bool(n % 2))
        event = cloud_event(change, subscription_id="s", event_id=f"C-{uuid.uuid4().hex}")
        producer.produce(raw, orjson.dumps(event), headers=[(H_SOURCE, EVENT_PLATFORM)])
    producer.flush(10)
    found, enricher = run_enricher(hub_settings, url, raw, out, expected=5)
    assert len(found) == 5 and enricher.stats["snapshot"] == 5

    # The true log ends (the embedded broker's ListOffsets answers the last batch's base).
    reader = ephemeral_consumer(hub_settings, "test")
    try:
        ends = log_bounds(reader, [(raw, p) for p in partitions_of(reader, raw)])
    finally:
        reader.close()
    probe = Consumer({"bootstrap.servers": hub_settings.kafka_bootstrap, "group.id": f"g.{raw}"})
    try:
        committed = probe.committed([TopicPartition(t, p) for t, p in ends], timeout=10)
    finally:
        probe.close()
    assert {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed} == {
        tp: high for tp, (_low, high) in ends.items()
    }
