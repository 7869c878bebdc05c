"""Patches per second through the mutator's decision against full snapshots, same run.

The same stored products (60 attributes, as in bench_diff) receive, in turn, a full Akeneo
snapshot with 5% of its values changed and an ERP patch of one owned value (`stock`), both
encoded as the records the mutator reads and decided by its SnapshotProcessor (decode,
ownership, merge or diff, mutation record). No broker: this is the mutator's CPU per record.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.bench_diff import _rate, make_product, mutate
from pim_hub.schemas.ownership import Ownership, patch_delta
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.processing import SnapshotProcessor

OWNERSHIP = Ownership.from_sources({"erp": ["values.stock", "values.price"]})
AKENEO_VERSION = "2026-01-01T00:00:00+00:00"


def _patch_record(key: str, sku: str, stock: int, version: str) -> dict[str, Any]:
    payload = {"values": {"stock": [{"locale": None, "scope": None, "data": stock}]}}
    return {
        "event_id": str(uuid.uuid4()),
        "entity_type": "product",
        "entity_key": key,
        "source_version": version,
        "origin": "external",
        "payload": None,
        "delta": orjson.dumps(patch_delta("erp", "patch", sku, payload)).decode(),
        "received_at": datetime.now(UTC),
        "correlation_id": None,
    }


def run(n_products: int = 200, min_seconds: float = 2.0, seed: int = 11) -> dict[str, Any]:
    """Decisions per second for full snapshots and for patches on the same stored states."""
    rnd = random.Random(seed)
    serde = Serde()
    processor = SnapshotProcessor(serde, ownership=OWNERSHIP)
    stored: dict[str, dict[str, Any]] = {}
    snapshots: list[tuple[bytes, bytes]] = []
    patches: list[tuple[bytes, bytes]] = []
    for i in range(n_products):
        product = make_product(i, rnd)
        product["updated"] = AKENEO_VERSION
        key = f"product:{product['uuid']}"
        first = snapshot_record("product", key, product, AKENEO_VERSION, "sync")
        outcome = processor.process(key.encode(), serde.encode("Snapshot", first), lambda _k: None)
        assert outcome.new_state is not None
        stored[key] = orjson.loads(orjson.dumps(outcome.new_state))  # as the table keeps it
        changed = mutate(product, rnd)
        changed["updated"] = "2026-01-02T00:00:00+00:00"
        full = snapshot_record("product", key, changed, changed["updated"], "sync")
        snapshots.append((key.encode(), serde.encode("Snapshot", full)))
        sku = str(product.get("identifier") or key)
        patch = _patch_record(key, sku, rnd.randint(0, 500), "2020-05-02T10:00:00+00:00")
        patches.append((key.encode(), serde.encode("Snapshot", patch)))

    def decide(record: tuple[bytes, bytes]) -> None:
        outcome = processor.process(record[0], record[1], lambda k: stored[k])
        assert outcome.kind == "mutation", outcome.invalid

    snapshot_rate, snapshot_n = _rate(decide, snapshots, min_seconds)
    patch_rate, patch_n = _rate(decide, patches, min_seconds)
    return {
        "products": n_products,
        "snapshots_per_s": snapshot_rate,
        "patches_per_s": patch_rate,
        "patches_vs_snapshots": patch_rate / snapshot_rate,
        "measured": {"snapshots": snapshot_n, "patches": patch_n},
    }


if __name__ == "__main__":
    print(orjson.dumps(run(), option=orjson.OPT_INDENT_2).decode())
