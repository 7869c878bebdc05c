"""An ERP stock feed end to end: patches by SKU, field ownership, the JSON and Avro topics.

The session's hub runs with HUB_SOURCES from tests/conftest.py: the source `erp` owns the
attributes `erp_stock` and `erp_price`, Akeneo the rest.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.drivers.discovery import discover
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime.kafka import make_producer, produce_sync
from pim_hub.runtime.logread import ephemeral_consumer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from tests.integration.test_replay_ops import REFRESH_S
from tests.integration.waits import wait_at_least

pytestmark = pytest.mark.integration


def _product(product_uuid: str, sku: str, name: str, updated: str) -> dict[str, Any]:
    return {
        "uuid": product_uuid,
        "identifier": sku,
        "enabled": True,
        "family": "shoes",
        "categories": ["men"],
        "values": {
            "sku": [{"locale": None, "scope": None, "data": sku}],
            "name": [{"locale": "en_US", "scope": None, "data": name}],
        },
        "updated": updated,
    }


def _stock(data: Any) -> dict[str, Any]:
    return {"values": {"erp_stock": [{"locale": None, "scope": None, "data": data}]}}


def _invalid_end(settings: Settings) -> int:
    consumer = ephemeral_consumer(settings, "patches-test")
    try:
        return int(
            consumer.get_watermark_offsets(TopicPartition(topics.SNAPSHOTS_INVALID, 0), timeout=10)[
                1
            ]
        )
    finally:
        consumer.close()


def _refusals(settings: Settings, start: int, key: str) -> list[dict[str, str]]:
    """Headers of the records set aside under `key` from `start` on (one partition)."""
    consumer = ephemeral_consumer(settings, "patches-test")
    found: list[dict[str, str]] = []
    try:
        consumer.assign([TopicPartition(topics.SNAPSHOTS_INVALID, 0, start)])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            if msg.key() == key.encode():
                headers: list[tuple[str, bytes | None]] = msg.headers() or []  # type: ignore[assignment]
                found.append({k: (v or b"").decode() for k, v in headers})
    finally:
        consumer.close()
    return found


def test_an_erp_stock_feed_by_sku(
    pipeline: Supervisor,
    supervisor: Supervisor,
    hub_settings: Settings,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    # The patch service and the local model it resolves SKUs through.
    supervisor.env["HUB_PATCHES_WAIT_S"] = "90"
    supervisor.start("entity-projector", "entities", "project")
    supervisor.start("patches", "patches")
    integration_id = f"erp-{unique}"
    upsert_integration(
        database_url,
        discover(),
        Integration(
            integration_id,
            "erp feed sink",
            "webhook",
            True,
            {"url": f"{http_sink.url}/{unique}"},
            None,
            {},
        ),
    )
    time.sleep(REFRESH_S)
    serde = Serde()
    producer = make_producer(hub_settings)
    product_uuid = str(uuid.UUID(int=int(unique, 16)))
    sku = f"ERP-{unique}"
    key = f"product:{product_uuid}"

    def bodies() -> list[dict[str, Any]]:
        return [b for b in http_sink.bodies(key) if b["integration_id"] == integration_id]

    def wait_bodies(n: int) -> list[dict[str, Any]]:
        return wait_at_least(
            bodies, n, timeout=150, what=f"{n} deliveries of {key}", supervisor=supervisor
        )

    def akeneo(name: str, version: str) -> None:
        record = snapshot_record(
            "product", key, _product(product_uuid, sku, name, version), version, "sync"
        )
        produce_sync(producer, topics.SNAPSHOTS, serde.encode("Snapshot", record), key=key)

    def patch_json(payload: dict[str, Any], version: str) -> None:
        record = {
            "event_id": str(uuid.uuid4()),
            "source": "erp",
            "entity_type": "product",
            "identifier": sku,
            "version": version,
            "payload": payload,
        }
        produce_sync(producer, topics.PATCHES_JSON, orjson.dumps(record), key=f"product:{sku}")

    def patch_avro(payload: dict[str, Any], version: str) -> None:
        record = {
            "event_id": str(uuid.uuid4()),
            "source": "erp",
            "entity_type": "product",
            "identifier": sku,
            "mode": "patch",
            "version": version,
            "payload": orjson.dumps(payload).decode(),
            "received_at": datetime.now(UTC),
            "correlation_id": None,
        }
        value = serde.encode("Patch", record, topic=topics.PATCHES)
        produce_sync(producer, topics.PATCHES, value, key=f"product:{sku}")

    # Akeneo creates the product; the ERP's clock is years behind Akeneo's.
    akeneo("Runner", "2026-01-01T10:00:00+00:00")
    assert wait_bodies(1)[0]["operation"] == "create"

    # 1. A patch by SKU (JSON topic) reaches the target as a one-field update.
    patch_json(_stock(17), "2020-05-02T10:00:00+00:00")
    second = wait_bodies(2)[1]
    assert second["operation"] == "update"
    assert [(c["field"], c["attribute"], c["new"]) for c in second["changes"]] == [
        ("values", "erp_stock", 17)
    ]
    assert second["state"]["values"]["name"][0]["data"] == "Runner"

    # 2. A later Akeneo snapshot without the stock leaves the stock alone.
    akeneo("Runner 2", "2026-01-01T11:00:00+00:00")
    third = wait_bodies(3)[2]
    assert [(c["attribute"], c["new"]) for c in third["changes"]] == [("name", "Runner 2")]
    assert third["state"]["values"]["erp_stock"][0]["data"] == 17

    # 3. A patch to a field Akeneo owns is refused with the reason (Avro topic).
    start = _invalid_end(hub_settings)
    patch_avro(
        {"values": {"name": [{"locale": "en_US", "scope": None, "data": "ERP name"}]}},
        "2020-05-03T10:00:00+00:00",
    )

    def refused() -> list[dict[str, str]]:
        return _refusals(hub_settings, start, f"product:{sku}")

    (headers,) = wait_for(refused, timeout=120, what="the refused patch", supervisor=supervisor)
    assert headers["error.type"] == "invalid_patch"
    assert headers["error.reason"] == "not_owner"
    assert "values.name (owned by akeneo)" in headers["error.message"]

    # 4. The Avro topic behaves like the JSON one: the next stock arrives as one change.
    patch_avro(_stock(12), "2020-05-04T10:00:00+00:00")
    fourth = wait_bodies(4)[3]
    assert [(c["attribute"], c["old"], c["new"]) for c in fourth["changes"]] == [
        ("erp_stock", 17, 12)
    ]
    assert fourth["state"]["values"]["name"][0]["data"] == "Runner 2"
    assert len(bodies()) == 4  # the refused patch made no delivery
