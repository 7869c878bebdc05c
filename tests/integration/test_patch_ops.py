"""Refused producers' patches seen, traced and sent again with `hub invalid` and `hub trace`.

A patch for a SKU the hub has not seen is refused at once (HUB_PATCHES_WAIT_S=0) and a patch
to a field Akeneo owns is refused with its reason; both are listed and shown as patches,
`hub trace SKU` shows them before the product exists and after, and `hub invalid redrive`
sends them back to the patches topic each came from once the patch service would accept
them (unchanged once the product exists; with fixed values for the field the ERP may not
change), never while it would refuse them again.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.console.data import invalid_snapshots
from pim_hub.devstack.stack import query, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import make_producer, produce_sync
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from tests.integration.test_producer_patches import _product, _stock

pytestmark = pytest.mark.integration


def _hub(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def test_refused_patches_are_listed_traced_and_redriven(
    pipeline: Supervisor,
    supervisor: Supervisor,
    hub_env: dict[str, str],
    hub_settings: Settings,
    database_url: str,
    tmp_path: Path,
    unique: str,
) -> None:
    supervisor.env["HUB_PATCHES_WAIT_S"] = "0"  # a patch for an unseen SKU is refused at once
    supervisor.start("entity-projector", "entities", "project")
    supervisor.start("patches", "patches")
    serde = Serde()
    producer = make_producer(hub_settings)
    product_uuid = str(uuid.UUID(int=int(unique, 16)))
    sku = f"PT-{unique}"
    key = f"product:{product_uuid}"
    patch_key = f"product:{sku}"

    def listed() -> list[dict[str, Any]]:
        out = _hub(hub_env, "invalid", "list", "--key", patch_key, "--output", "json")
        assert out.exit_code == 0, out.output
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        return rows

    def traced() -> dict[str, Any]:
        out = _hub(hub_env, "trace", sku, "--json")
        assert out.exit_code == 0, out.output
        trace: dict[str, Any] = orjson.loads(out.stdout)
        return trace

    # 1. The ERP sends the stock of a SKU the hub has not seen: refused, as a patch.
    first = {
        "event_id": str(uuid.uuid4()),
        "source": "erp",
        "entity_type": "product",
        "identifier": sku,
        "version": "2020-05-02T10:00:00+00:00",
        "payload": _stock(5),
    }
    produce_sync(producer, topics.PATCHES_JSON, orjson.dumps(first), key=patch_key)
    wait_for(
        lambda: len(listed()) == 1, timeout=120, what="the refused patch", supervisor=supervisor
    )
    [unseen] = listed()
    assert unseen["kind"] == "patch" and unseen["entity_type"] == "product"
    assert unseen["error_type"] == "invalid_patch" and unseen["code"] == "unseen_entity"
    assert unseen["source_topic"] == topics.PATCHES_JSON
    shown = _hub(hub_env, "invalid", "show", unseen["id"])
    assert shown.exit_code == 0, shown.output
    patch = json.loads(shown.stdout)["patch"]
    assert patch["event_id"] == first["event_id"] and patch["payload"] == _stock(5)

    # `hub trace SKU` shows it although no entity has that SKU yet.
    trace = traced()
    assert trace["keys"] == []
    patches = [e for e in trace["timeline"] if e["stage"] == "patch"]
    assert [(p["event_id"], p["outcome"], p["fields"]) for p in patches] == [
        (first["event_id"], "refused", ["values.erp_stock"])
    ]
    [refusal] = [e for e in trace["timeline"] if e["stage"] == "invalid"]
    assert refusal["code"] == "unseen_entity" and refusal["record_id"] == unseen["id"]

    # While the product is still unknown, redriving is refused and publishes nothing.
    early = _hub(hub_env, "invalid", "redrive", unseen["id"])
    assert early.exit_code == 2 and "still refused (unseen_entity)" in early.output

    # 2. Akeneo creates the product; the local model learns its SKU.
    version = "2026-01-01T10:00:00+00:00"
    record = snapshot_record(
        "product", key, _product(product_uuid, sku, "Patched", version), version, "sync"
    )
    produce_sync(producer, topics.SNAPSHOTS, serde.encode("Snapshot", record), key=key)

    def stock() -> Any:
        rows = query(database_url, "SELECT state FROM entities WHERE entity_key = %s", key)
        if not rows:
            return None
        items = rows[0]["state"].get("values", {}).get("erp_stock") or [{"data": "none"}]
        return items[0]["data"]

    wait_for(lambda: stock() == "none", timeout=120, what="the product", supervisor=supervisor)

    # 3. A patch to a field Akeneo owns (Avro topic) is refused with that reason.
    owned = {
        "event_id": str(uuid.uuid4()),
        "source": "erp",
        "entity_type": "product",
        "identifier": sku,
        "mode": "patch",
        "version": "2020-05-03T10:00:00+00:00",
        "payload": orjson.dumps(
            {"values": {"name": [{"locale": "en_US", "scope": None, "data": "ERP name"}]}}
        ).decode(),
        "received_at": datetime.now(UTC),
        "correlation_id": None,
    }
    value = serde.encode("Patch", owned, topic=topics.PATCHES)
    produce_sync(producer, topics.PATCHES, value, key=patch_key)
    wait_for(
        lambda: len(listed()) == 2, timeout=120, what="the refused patch", supervisor=supervisor
    )
    not_owner = listed()[1]
    assert not_owner["code"] == "not_owner" and not_owner["kind"] == "patch"
    assert not_owner["source_topic"] == topics.PATCHES
    assert "values.name (owned by akeneo)" in not_owner["reason"]

    # The console's page of set-aside records shows both as patches, with code and topic.
    console_rows = [r for r in invalid_snapshots(hub_settings, 100_000) if r.key == patch_key]
    assert sorted((r.record, r.patch_source, r.code, r.source_topic) for r in console_rows) == [
        ("patch", "erp", "not_owner", topics.PATCHES),
        ("patch", "erp", "unseen_entity", topics.PATCHES_JSON),
    ]

    # Redriven unchanged it would be refused again: nothing is published.
    again = _hub(hub_env, "invalid", "redrive", not_owner["id"])
    assert again.exit_code == 2 and "still refused (not_owner)" in again.output

    # 4. The unseen patch, sent again now the product exists, reaches the model.
    done = _hub(hub_env, "invalid", "redrive", unseen["id"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"published {patch_key} to {topics.PATCHES_JSON}")
    wait_for(lambda: stock() == 5, timeout=120, what="the redriven stock", supervisor=supervisor)

    # 5. The refused Avro patch with fixed values (the stock, which the ERP owns).
    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(orjson.dumps(_stock(7)))
    done = _hub(
        hub_env,
        "invalid",
        "redrive",
        not_owner["id"],
        "--payload",
        str(fixed),
        "--version",
        "2020-05-04T10:00:00+00:00",
    )
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"published {patch_key} to {topics.PATCHES}[")
    wait_for(lambda: stock() == 7, timeout=120, what="the fixed stock", supervisor=supervisor)

    # 6. The trace of the SKU: the entity, its four patches, refused and accepted, in order.
    def outcomes() -> list[tuple[str, str]]:
        timeline = traced()["timeline"]
        return [(e["topic"], e["outcome"]) for e in timeline if e["stage"] == "patch"]

    wait_for(
        lambda: (
            outcomes()
            == [
                (topics.PATCHES_JSON, "refused"),
                (topics.PATCHES, "refused"),
                (topics.PATCHES_JSON, "accepted"),
                (topics.PATCHES, "accepted"),
            ]
        ),
        timeout=60,
        what="four patches in the trace",
        supervisor=supervisor,
    )
    trace = traced()
    assert trace["keys"] == [key]
    stages = [e["stage"] for e in trace["timeline"]]
    assert stages.count("invalid") == 2 and "mutation" in stages
    accepted = [e for e in trace["timeline"] if e["stage"] == "snapshot" and e["kind"] == "patch"]
    assert [e["patch_source"] for e in accepted] == ["erp", "erp"]
    text = _hub(hub_env, "trace", sku)
    assert text.exit_code == 0, text.output
    assert "→ refused (not_owner)" in text.stdout and "→ accepted" in text.stdout
