"""The entity projector on the real broker and PostgreSQL, and `hub entities show`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from pim_hub.devstack.stack import query, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import make_producer, produce_sync
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.core import diffing

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def _product(uid: str, sku: str, updated: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "uuid": uid,
        "identifier": sku,
        "family": "shoes",
        "values": {
            "sku": [
                {
                    "locale": None,
                    "scope": None,
                    "data": sku,
                    "attribute_type": "pim_catalog_identifier",
                }
            ],
            **values,
        },
        "updated": updated,
    }


def _name(locale: str, text: str) -> dict[str, Any]:
    return {"locale": locale, "scope": None, "data": text}


def _record(key: str, decision: diffing.Decision, version: str, n: int) -> dict[str, Any]:
    assert decision.kind == "mutation" and decision.mutation_id is not None
    return {
        "mutation_id": decision.mutation_id,
        "entity_type": "product",
        "entity_key": key,
        "operation": decision.operation,
        "changes": [diffing.change_to_record(c) for c in decision.changes],
        "state": orjson.dumps(decision.state_payload).decode(),
        "version": version,
        "causation_id": f"snapshot-{n}",
        "correlation_id": None,
        "origin": "external",
        "source_received_at": T0,
        "created_at": T0 + timedelta(seconds=n),
    }


def test_projection_keeps_latest_entity_and_values_through_replays_and_deletes(
    supervisor: Supervisor, hub_settings: Settings, database_url: str, unique: str
) -> None:
    uid = f"00000000-0000-4000-a000-{unique:0>12}"[:36]
    key, sku = f"product:{uid}", f"SKU-{unique}"
    v1, v2, v3 = (f"2024-06-0{d}T08:00:00+00:00" for d in (1, 2, 3))
    p1 = _product(uid, sku, v1, {"name": [_name("en_US", "Runner"), _name("fr_FR", "Coureur")]})
    p2 = _product(
        uid,
        sku,
        v2,
        {
            "name": [_name("en_US", "Runner 2"), _name("fr_FR", "Coureur")],
            "price": [
                {
                    "locale": None,
                    "scope": "web",
                    "data": [{"amount": "10.5000", "currency": "EUR"}],
                    "attribute_type": "pim_catalog_price_collection",
                }
            ],
        },
    )
    d1 = diffing.decide("product", key, None, p1, v1)
    d2 = diffing.decide("product", key, d1.new_state, p2, v2)
    d3 = diffing.decide("product", key, d2.new_state, None, v3)
    m1, m2, m3 = _record(key, d1, v1, 1), _record(key, d2, v2, 2), _record(key, d3, v3, 3)
    # Another update computed from v1, older than m2: must not undo it.
    stale = _record(
        key,
        diffing.decide(
            "product",
            key,
            d1.new_state,
            _product(
                uid,
                sku,
                "2024-06-01T09:00:00+00:00",
                {"name": [_name("en_US", "Old"), _name("fr_FR", "Coureur")]},
            ),
            "2024-06-01T09:00:00+00:00",
        ),
        "2024-06-01T09:00:00+00:00",
        4,
    )
    serde, producer = Serde(), make_producer(hub_settings)

    def publish(record: dict[str, Any]) -> None:
        value = serde.encode("Mutation", record, topic=topics.MUTATIONS)
        produce_sync(producer, topics.MUTATIONS, value, key=key)

    supervisor.start("entities", "entities", "project")
    for record in (m1, m2, m2, stale, m1):  # re-deliveries and a late, older update
        publish(record)

    def entity() -> dict[str, Any] | None:
        rows = query(database_url, "SELECT * FROM entities WHERE entity_key = %s", key)
        return rows[0] if rows and rows[0]["mutation_id"] == m2["mutation_id"] else None

    row = wait_for(entity, timeout=45, interval=0.2, what="entity at m2", supervisor=supervisor)
    publish(m2)  # one more re-delivery after it settled, then a marker entity to know it's read
    marker = _record(
        f"product:marker-{unique}",
        diffing.decide(
            "product", f"product:marker-{unique}", None, {"identifier": f"marker-{unique}"}, None
        ),
        v1,
        9,
    )
    marker["entity_key"] = f"product:marker-{unique}"
    produce_sync(
        producer, topics.MUTATIONS, serde.encode("Mutation", marker), key=marker["entity_key"]
    )
    wait_for(
        lambda: query(
            database_url, "SELECT 1 FROM entities WHERE entity_key = %s", marker["entity_key"]
        ),
        timeout=45,
        interval=0.2,
        what="marker projected",
        supervisor=supervisor,
    )

    row = entity()
    assert row is not None
    assert (row["code"], row["operation"], row["deleted"]) == (sku, "update", False)
    assert row["version"] == datetime(2024, 6, 2, 8, tzinfo=UTC)
    assert row["state"]["values"]["name"][0]["data"] == "Runner 2"
    values = {
        (v["attribute"], v["locale"], v["channel"]): v
        for v in query(database_url, "SELECT * FROM entity_values WHERE entity_key = %s", key)
    }
    assert set(values) == {
        ("sku", None, None),
        ("name", "en_US", None),
        ("name", "fr_FR", None),
        ("price", None, "web"),
    }
    # Each value remembers the mutation that last changed it.
    assert values[("name", "en_US", None)]["mutation_id"] == m2["mutation_id"]
    assert values[("name", "en_US", None)]["data"] == "Runner 2"
    assert values[("price", None, "web")]["data"] == [{"amount": "10.5000", "currency": "EUR"}]
    assert values[("price", None, "web")]["mutation_id"] == m2["mutation_id"]
    assert values[("name", "fr_FR", None)]["mutation_id"] == m1["mutation_id"]
    assert values[("sku", None, None)]["version"] == datetime(2024, 6, 1, 8, tzinfo=UTC)

    env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_LOG_LEVEL": "WARNING"}
    for lookup in (key, sku):
        shown = subprocess.run(
            [sys.executable, "-m", "pim_hub", "entities", "show", lookup],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        body = orjson.loads(shown.stdout)
        assert body["entity_key"] == key
        assert {(v["attribute"], v["locale"]) for v in body["values"]} >= {("name", "fr_FR")}
    missing = subprocess.run(
        [sys.executable, "-m", "pim_hub", "entities", "show", f"nothing-{unique}"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert missing.returncode == 1 and b"no entity" in missing.stderr

    publish(m3)

    def deleted_row() -> dict[str, Any]:
        rows = query(database_url, "SELECT * FROM entities WHERE entity_key = %s", key)
        return rows[0] if rows and rows[0]["deleted"] else {}

    deleted = wait_for(
        deleted_row,
        timeout=45,
        interval=0.2,
        what="entity deleted",
        supervisor=supervisor,
    )
    assert deleted["mutation_id"] == m3["mutation_id"]
    assert deleted["state"]["identifier"] == sku  # the last known state is kept
    assert query(database_url, "SELECT * FROM entity_values WHERE entity_key = %s", key) == []
