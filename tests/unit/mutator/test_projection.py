"""The entity projection's pure planning: ordering, duplicates, value rows and deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from pim_hub.schemas.ownership import Ownership
from pim_hub.services.mutator.core import diffing
from pim_hub.services.projections.entities import (
    Stored,
    classify,
    code_of,
    plan_batch,
    source_mutations,
    values_of,
)

T0 = datetime(2024, 6, 1, tzinfo=UTC)
KEY = "product:u-1"


def _product(updated: str, name: str, **values: Any) -> dict[str, Any]:
    return {
        "uuid": "u-1",
        "values": {
            "sku": [
                {
                    "locale": None,
                    "scope": None,
                    "data": "SKU-1",
                    "attribute_type": "pim_catalog_identifier",
                }
            ],
            "name": [{"locale": "en_US", "scope": None, "data": name}],
            **values,
        },
        "updated": updated,
    }


def _mutation(decision: diffing.Decision, version: str | None, n: int) -> dict[str, Any]:
    return {
        "mutation_id": decision.mutation_id,
        "entity_type": "product",
        "entity_key": KEY,
        "operation": decision.operation,
        "changes": [diffing.change_to_record(c) for c in decision.changes],
        "state": orjson.dumps(decision.state_payload).decode(),
        "version": version,
        "created_at": T0 + timedelta(seconds=n),
    }


V1, V2 = "2024-06-01T08:00:00+00:00", "2024-06-02T08:00:00+00:00"


@pytest.mark.parametrize(
    ("version", "created", "stored_version", "verdict"),
    [
        (V2, 1, datetime(2024, 6, 1, 8, tzinfo=UTC), "apply"),
        (V1, 9, datetime(2024, 6, 2, 8, tzinfo=UTC), "stale"),
        (V1, 9, datetime(2024, 6, 1, 8, tzinfo=UTC), "apply"),  # same version, later mutation
        (V1, 1, datetime(2024, 6, 1, 8, tzinfo=UTC), "stale"),  # same version, earlier one
        (None, 9, None, "apply"),
        (None, 1, None, "stale"),
    ],
)
def test_classify_orders_by_version_then_creation_time(
    version: str | None, created: int, stored_version: datetime | None, verdict: str
) -> None:
    stored = Stored("other", stored_version, T0 + timedelta(seconds=5))
    m = {"mutation_id": "m", "version": version, "created_at": T0 + timedelta(seconds=created)}
    assert classify(m, stored) == verdict


def test_classify_recognises_a_redelivered_mutation() -> None:
    m = {"mutation_id": "m", "version": V2, "created_at": T0}
    assert classify(m, Stored("m", None, T0)) == "duplicate"
    assert classify(m, None) == "apply"


def test_update_touches_only_changed_values_and_deletes_removed_ones() -> None:
    d1 = diffing.decide(
        "product",
        KEY,
        None,
        _product(V1, "Runner", color=[{"locale": None, "scope": None, "data": "red"}]),
        V1,
    )
    d2 = diffing.decide("product", KEY, d1.new_state, _product(V2, "Runner 2"), V2)
    m1, m2 = _mutation(d1, V1, 1), _mutation(d2, V2, 2)
    stored: dict[str, Stored] = {}
    existing: dict[str, set[Any]] = {}
    first = plan_batch([m1], stored, existing)
    assert {slot for _, slot in first.values} == {
        ("sku", None, None),
        ("name", "en_US", None),
        ("color", None, None),
    }
    second = plan_batch([m2, m2, m1], stored, existing)
    assert second.counts == {"update": 1, "duplicate": 1, "stale": 1}
    assert second.values[(KEY, ("color", None, None))] is None
    row = second.values[(KEY, ("name", "en_US", None))]
    assert row is not None and row["mutation_id"] == m2["mutation_id"]
    assert (KEY, ("sku", None, None)) not in second.values  # untouched: keeps m1
    assert existing[KEY] == {("sku", None, None), ("name", "en_US", None)}


def test_a_source_patch_behind_akeneos_clock_is_projected_and_does_not_reorder_akeneo() -> None:
    """An ERP whose clock is years behind Akeneo's: its stock still lands in the model, and
    the entity keeps Akeneo's version, so a replayed older Akeneo mutation stays stale."""
    ownership = Ownership.from_sources({"erp": ["values.stock"]})
    foreign = source_mutations(ownership)
    assert foreign is not None and source_mutations(Ownership()) is None
    akeneo_old, akeneo = "2026-01-01T09:00:00+00:00", "2026-01-01T10:00:00+00:00"
    erp = "2020-05-02T10:00:00+00:00"
    d0 = diffing.decide("product", KEY, None, _product(akeneo_old, "Runner"), akeneo_old)
    d1 = diffing.decide("product", KEY, d0.new_state, _product(akeneo, "Runner 1"), akeneo)
    stock = [{"locale": None, "scope": None, "data": 5}]
    # The mutator's decision (made against the ERP's own earlier versions), as it emits it.
    later = "2026-01-01T10:00:01+00:00"
    d2 = diffing.decide(
        "product", KEY, d1.new_state, _product(akeneo, "Runner 1", stock=stock), later
    )
    m0, m1, m2 = _mutation(d0, akeneo_old, 0), _mutation(d1, akeneo, 1), _mutation(d2, erp, 2)
    assert not foreign(m1) and foreign(m2)
    stored: dict[str, Stored] = {}
    existing: dict[str, set[Any]] = {}
    plan_batch([m0, m1], stored, existing, foreign)
    patch = plan_batch([m2], stored, existing, foreign)
    assert patch.counts == {"update": 1}
    row = patch.entities[KEY]
    assert row["version"] == datetime(2026, 1, 1, 10, tzinfo=UTC)  # Akeneo's, not the ERP's
    value = patch.values[(KEY, ("stock", None, None))]
    assert value is not None and value["version"] == datetime(2020, 5, 2, 10, tzinfo=UTC)
    # Without the sources the ERP's clock made it look older than Akeneo's last version.
    assert classify(m2, Stored("x", datetime(2026, 1, 1, 10, tzinfo=UTC), m1["created_at"])) == (
        "stale"
    )
    # A replayed older Akeneo mutation is still stale after the patch.
    replayed = {**m0, "mutation_id": "replayed", "created_at": T0 + timedelta(seconds=9)}
    assert plan_batch([replayed], stored, existing, foreign).counts == {"stale": 1}


def test_delete_removes_every_value_and_keeps_the_entity_row() -> None:
    d1 = diffing.decide("product", KEY, None, _product(V1, "Runner"), V1)
    d2 = diffing.decide("product", KEY, d1.new_state, None, V2)
    stored: dict[str, Stored] = {}
    existing: dict[str, set[Any]] = {}
    batch = plan_batch([_mutation(d1, V1, 1), _mutation(d2, V2, 2)], stored, existing)
    assert batch.entities[KEY]["deleted"] is True
    assert all(row is None for row in batch.values.values()) and batch.values
    assert batch.counts == {"create": 1, "deleted": 1}


def test_values_and_codes_of_products_and_enriched_categories() -> None:
    assert code_of("product", KEY, _product(V1, "x")) == "SKU-1"
    assert code_of("category", "category:men", {"code": "men"}) == "men"
    category = {
        "code": "men",
        "values": {
            "desc|96b8|en_US": {
                "data": "<p>x</p>",
                "type": "textarea",
                "locale": "en_US",
                "channel": None,
                "attribute_code": "desc|96b8",
            }
        },
    }
    assert values_of("category", category) == {
        ("desc|96b8", "en_US", None): values_of("category", category)[("desc|96b8", "en_US", None)]
    }
    assert values_of("category", category)[("desc|96b8", "en_US", None)].data == "<p>x</p>"
