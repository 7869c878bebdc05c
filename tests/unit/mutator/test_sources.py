"""Several sources of one entity: patches, field ownership, versions per source (no broker)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pim_hub.schemas.errors import PermanentError
from pim_hub.schemas.ownership import Ownership, PatchRefused, patch_delta
from pim_hub.services.mutator.core.diffing import Decision
from pim_hub.services.mutator.core.normalise import denormalise
from pim_hub.services.mutator.sources import decide_with_sources

OWNERSHIP = Ownership.from_sources({"erp": ["values.stock", "values.price"]})
KEY = "product:7c1a8d8e-0b7e-4f4e-9a52-2c7a4f4d1e01"


def _product(version: str, **values: Any) -> dict[str, Any]:
    return {
        "uuid": KEY.split(":", 1)[1],
        "identifier": "SKU-1",
        "enabled": True,
        "family": "shoes",
        "categories": ["master"],
        "values": {
            "sku": [{"locale": None, "scope": None, "data": "SKU-1"}],
            "name": [{"locale": "en_US", "scope": None, "data": "Runner"}],
            **{k: [{"locale": None, "scope": None, "data": v}] for k, v in values.items()},
        },
        "updated": version,
    }


def _snapshot(stored: dict[str, Any] | None, payload: dict[str, Any], version: str) -> Decision:
    return decide_with_sources(OWNERSHIP, "product", KEY, stored, payload, None, version)


def _patch(
    stored: dict[str, Any] | None,
    payload: dict[str, Any],
    version: str,
    source: str = "erp",
    mode: str = "patch",
) -> Decision:
    delta = orjson.dumps(patch_delta(source, mode, "SKU-1", payload)).decode()  # type: ignore[arg-type]
    return decide_with_sources(OWNERSHIP, "product", KEY, stored, None, delta, version)


def _stock(data: Any, scope: str | None = None) -> dict[str, Any]:
    return {"values": {"stock": [{"locale": None, "scope": scope, "data": data}]}}


@pytest.fixture
def created() -> dict[str, Any]:
    decision = _snapshot(None, _product("2026-01-01T00:00:00+00:00"), "2026-01-01T00:00:00+00:00")
    assert decision.kind == "mutation" and decision.new_state is not None
    return decision.new_state


def test_a_patch_by_the_owner_is_a_one_field_update(created: dict[str, Any]) -> None:
    # The ERP's clock is far behind Akeneo's: versions are compared per source.
    decision = _patch(created, _stock(17), "2020-05-02T10:00:00+00:00")
    assert decision.kind == "mutation" and decision.operation == "update"
    ((change),) = decision.changes
    assert (change.field, change.attribute, change.new) == ("values", "stock", 17)
    assert decision.state_payload is not None
    assert decision.state_payload["values"]["stock"][0]["data"] == 17
    assert decision.state_payload["values"]["name"][0]["data"] == "Runner"


def test_a_later_akeneo_snapshot_without_the_field_leaves_it_alone(
    created: dict[str, Any],
) -> None:
    patched = _patch(created, _stock(17), "2020-05-02T10:00:00+00:00").new_state
    renamed = _product("2026-01-02T00:00:00+00:00")
    renamed["values"]["name"][0]["data"] = "Runner 2"
    decision = _snapshot(patched, renamed, "2026-01-02T00:00:00+00:00")
    assert decision.kind == "mutation"
    assert [(c.attribute, c.new) for c in decision.changes] == [("name", "Runner 2")]
    assert decision.new_state is not None
    assert denormalise(decision.new_state)["values"]["stock"][0]["data"] == 17
    # Akeneo sending a stock of its own changes nothing either: ERP owns it.
    with_stock = _product("2026-01-03T00:00:00+00:00", stock=3)
    with_stock["values"]["name"][0]["data"] = "Runner 2"
    again = _snapshot(decision.new_state, with_stock, "2026-01-03T00:00:00+00:00")
    assert again.kind in ("noop", "duplicate")
    # And an older ERP patch is still stale after the Akeneo snapshots.
    assert _patch(decision.new_state, _stock(5), "2020-05-01T00:00:00+00:00").kind == "stale"


def test_a_patch_to_a_field_akeneo_owns_is_refused_with_the_reason(
    created: dict[str, Any],
) -> None:
    name = {"values": {"name": [{"locale": "en_US", "scope": None, "data": "Hacked"}]}}
    with pytest.raises(PatchRefused, match=r"may not change values\.name \(owned by akeneo\)"):
        _patch(created, name, "2020-05-02T10:00:00+00:00")
    with pytest.raises(PatchRefused, match="unknown patch source 'pim'"):
        _patch(created, _stock(1), "2020-05-02T10:00:00+00:00", source="pim")
    with pytest.raises(PatchRefused, match="cannot carry 'labels'"):
        _patch(created, {"labels": {"en_US": "x"}}, "2020-05-02T10:00:00+00:00")
    assert issubclass(PatchRefused, PermanentError)


def test_a_patch_for_an_unseen_entity_is_refused(created: dict[str, Any]) -> None:
    with pytest.raises(PatchRefused, match="unknown") as info:
        _patch(None, _stock(1), "2020-05-02T10:00:00+00:00")
    assert info.value.code == "unseen_entity"


def test_versions_per_source_duplicates_and_stale(created: dict[str, Any]) -> None:
    first = _patch(created, _stock(17), "2020-05-02T10:00:00+00:00")
    assert first.new_state is not None
    assert _patch(first.new_state, _stock(17), "2020-05-02T10:00:00+00:00").kind == "duplicate"
    assert _patch(first.new_state, _stock(9), "2020-05-01T00:00:00+00:00").kind == "stale"
    newer = _patch(first.new_state, _stock(9), "2020-05-03T00:00:00+00:00")
    assert newer.kind == "mutation" and newer.changes[0].old == 17


def test_a_full_snapshot_of_a_source_replaces_only_what_it_owns(
    created: dict[str, Any],
) -> None:
    both = {
        "values": {
            **_stock(4)["values"],
            "price": [
                {"locale": None, "scope": None, "data": [{"amount": "9.90", "currency": "EUR"}]}
            ],
        }
    }
    state = _patch(created, both, "2020-05-02T10:00:00+00:00").new_state
    assert state is not None
    decision = _patch(state, _stock(6), "2020-05-03T00:00:00+00:00", mode="replace")
    changed = {(c.attribute, c.new) for c in decision.changes}
    assert changed == {("stock", 6), ("price", None)}  # price is ERP's and missing: removed
    assert decision.state_payload is not None
    assert decision.state_payload["values"]["name"][0]["data"] == "Runner"  # Akeneo's stays


def test_without_sources_a_snapshot_is_decided_as_before() -> None:
    plain = Ownership()
    payload = _product("2026-01-01T00:00:00+00:00", stock=3)
    decision = decide_with_sources(plain, "product", KEY, None, payload, None, None)
    assert decision.state_payload is not None
    assert decision.state_payload["values"]["stock"][0]["data"] == 3


def test_an_akeneo_delta_does_not_change_what_a_source_owns(created: dict[str, Any]) -> None:
    patched = _patch(created, _stock(17), "2020-05-02T10:00:00+00:00").new_state
    assert patched is not None

    def value(new: Any, attribute_type: str = "pim_catalog_number") -> dict[str, Any]:
        return {"previous": None, "new": new, "type": attribute_type, "locale": None, "scope": None}

    changes = {
        "values": {
            "stock": [value(3)],
            "name": [{**value("Delta", "pim_catalog_text"), "locale": "en_US"}],
        }
    }
    delta = orjson.dumps([changes]).decode()
    decision = decide_with_sources(
        OWNERSHIP, "product", KEY, patched, None, delta, "2026-01-05T00:00:00+00:00"
    )
    assert decision.kind == "mutation"
    assert [(c.attribute, c.new) for c in decision.changes] == [("name", "Delta")]
    assert decision.new_state is not None
    assert denormalise(decision.new_state)["values"]["stock"][0]["data"] == 17
    # The ERP's versions stay with the state.
    assert _patch(decision.new_state, _stock(5), "2020-05-01T00:00:00+00:00").kind == "stale"
