"""Field-level diff, mutation decisions and Event Platform deltas."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import orjson
import pytest

from pim_hub.schemas.entities import entity_key
from pim_hub.schemas.errors import DeltaWithoutBase, InvalidSnapshot
from pim_hub.schemas.versions import delta_version
from pim_hub.services.mutator.core.apply import apply, apply_delta, decide_delta
from pim_hub.services.mutator.core.diffing import (
    Change,
    change_from_record,
    change_to_record,
    compare_versions,
    content_hash,
    decide,
    diff,
    index_state,
    mutation_id,
)
from pim_hub.services.mutator.core.normalise import dumps, source_of

UUID = "25566245-55c3-42ce-86d9-8610ac459fa8"
T1 = "2024-03-01T10:00:00+00:00"
T2 = "2024-03-01T11:00:00+00:00"
T3 = "2024-03-01T12:00:00+00:00"


def shoe(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uuid": UUID,
        "enabled": True,
        "family": "shoes",
        "categories": ["men", "summer"],
        "groups": [],
        "parent": None,
        "values": {
            "sku": [
                {
                    "locale": None,
                    "scope": None,
                    "data": "SHOE-1",
                    "attribute_type": "pim_catalog_identifier",
                }
            ],
            "name": [
                {
                    "locale": "en_US",
                    "scope": None,
                    "data": "Runner",
                    "attribute_type": "pim_catalog_text",
                },
                {
                    "locale": "fr_FR",
                    "scope": None,
                    "data": "Coureur",
                    "attribute_type": "pim_catalog_text",
                },
            ],
            "price": [
                {
                    "locale": None,
                    "scope": None,
                    "data": [{"amount": "89.90", "currency": "EUR"}],
                    "attribute_type": "pim_catalog_price_collection",
                }
            ],
            "colors": [
                {
                    "locale": None,
                    "scope": None,
                    "data": ["red", "blue"],
                    "attribute_type": "pim_catalog_multiselect",
                }
            ],
        },
        "associations": {"X_SELL": {"products": ["p1", "p2"], "product_models": [], "groups": []}},
        "quantified_associations": {},
        "updated": T1,
    }
    base.update(overrides)
    return base


def decide_new(
    payload: dict[str, Any], stored: dict[str, Any] | None = None, version: str | None = None
) -> Any:
    return decide("product", f"product:{UUID}", stored, payload, version)


# --- decisions -------------------------------------------------------------------------------


def test_first_snapshot_is_create_with_every_field() -> None:
    d = decide_new(shoe())
    assert (d.kind, d.operation) == ("mutation", "create")
    fields = {(c.field, c.attribute, c.locale) for c in d.changes}
    assert fields == {
        ("uuid", None, None),
        ("enabled", None, None),
        ("family", None, None),
        ("categories", None, None),
        ("values", "sku", None),
        ("values", "name", "en_US"),
        ("values", "name", "fr_FR"),
        ("values", "price", None),
        ("values", "colors", None),
        ("associations", "X_SELL.products", None),
    }
    categories = next(c for c in d.changes if c.field == "categories")
    assert (categories.added, categories.removed) == (("men", "summer"), ())
    assert d.state_payload is not None and d.state_payload["values"]["sku"][0]["data"] == "SHOE-1"
    assert d.new_state is not None and d.new_state["v"] == T1


def test_identical_snapshot_is_duplicate_and_stores_nothing() -> None:
    created = decide_new(shoe())
    again = decide_new(shoe(), created.new_state)
    assert (again.kind, again.operation, again.changes, again.mutation_id) == (
        "duplicate",
        None,
        (),
        None,
    )
    assert again.new_state is None


def test_same_content_newer_version_is_noop_that_advances_the_version() -> None:
    created = decide_new(shoe())
    # Reordered lists and reformatted decimals are the same content.
    same = shoe(updated=T2, categories=["summer", "men"])
    same["values"]["price"][0]["data"] = [{"amount": "89.9000", "currency": "EUR"}]
    same["values"]["colors"][0]["data"] = ["blue", "red"]
    d = decide_new(same, created.new_state)
    assert (d.kind, d.changes) == ("noop", ())
    assert d.new_state is not None and d.new_state["v"] == T2
    # ... so that a snapshot from between T1 and T2 is now recognised as stale.
    between = shoe(updated="2024-03-01T10:30:00+00:00", enabled=False)
    assert decide_new(between, d.new_state).kind == "stale"


def test_update_reports_only_changed_fields_with_source_text() -> None:
    created = decide_new(shoe())
    changed = shoe(updated=T2, categories=["men", "winter"], enabled=False)
    changed["values"]["name"][1]["data"] = "Coureuse"
    changed["values"]["price"][0]["data"] = [{"amount": "79.90", "currency": "EUR"}]
    changed["values"]["colors"][0]["data"] = ["red", "green"]
    d = decide_new(changed, created.new_state)
    assert (d.kind, d.operation) == ("mutation", "update")
    assert d.changes == (
        Change("categories", added=("winter",), removed=("summer",)),
        Change("enabled", old=True, new=False),
        Change(
            "values",
            "colors",
            old=["red", "blue"],
            new=["red", "green"],
            added=("green",),
            removed=("blue",),
        ),
        Change("values", "name", "fr_FR", old="Coureur", new="Coureuse"),
        Change(
            "values",
            "price",
            old=[{"amount": "89.90", "currency": "EUR"}],
            new=[{"amount": "79.90", "currency": "EUR"}],
        ),
    )


def test_value_set_to_null_is_a_removal() -> None:
    created = decide_new(shoe())
    changed = shoe(updated=T2)
    changed["values"]["name"][1]["data"] = None
    d = decide_new(changed, created.new_state)
    assert d.changes == (Change("values", "name", "fr_FR", old="Coureur", new=None),)
    assert d.state_payload is not None
    assert [v["locale"] for v in d.state_payload["values"]["name"]] == ["en_US"]


def test_older_snapshot_is_stale_even_with_other_offset() -> None:
    created = decide_new(shoe(updated="2024-03-01T12:00:00+02:00"))  # 10:00Z
    older = shoe(updated="2024-03-01T09:59:59+00:00", enabled=False)
    newer = shoe(updated="2024-03-01T11:00:01+01:00", enabled=False)  # 10:00:01Z
    assert decide_new(older, created.new_state).kind == "stale"
    assert decide_new(newer, created.new_state).operation == "update"


def test_explicit_version_overrides_payload_updated() -> None:
    created = decide_new(shoe(), version=T2)
    assert created.new_state is not None and created.new_state["v"] == T2
    assert decide_new(shoe(updated=T3, enabled=False), created.new_state, version=T1).kind == (
        "stale"
    )


def test_same_version_different_content_is_still_applied() -> None:
    # Akeneo `updated` has one-second precision: two saves in one second share it.
    created = decide_new(shoe())
    d = decide_new(shoe(enabled=False), created.new_state)
    assert d.operation == "update"


def test_snapshot_without_version_keeps_the_stored_guard() -> None:
    created = decide_new(shoe())
    unversioned = shoe(enabled=False)
    del unversioned["updated"]
    d = decide_new(unversioned, created.new_state)
    assert d.operation == "update"
    assert d.new_state is not None and d.new_state["v"] == T1


def test_tombstone_deletes_carrying_last_known_state() -> None:
    created = decide_new(shoe())
    d = decide("product", f"product:{UUID}", created.new_state, None, T2)
    assert (d.kind, d.operation, d.changes) == ("mutation", "delete", ())
    assert d.state_payload == created.state_payload
    assert d.new_state == {"t": "product", "v": T2, "deleted": True}
    assert d.mutation_id is not None
    # A late snapshot from before the delete must not resurrect the product ...
    assert decide_new(shoe(), d.new_state).kind == "stale"
    # ... but a newer one re-creates it.
    assert decide_new(shoe(updated=T3), d.new_state).operation == "create"
    # The same tombstone again is a duplicate.
    assert decide("product", f"product:{UUID}", d.new_state, None, T2).kind == "duplicate"


def test_tombstone_with_nothing_stored_is_noop_remembering_the_deletion() -> None:
    d = decide("product", f"product:{UUID}", None, None, T2)
    assert (d.kind, d.operation, d.mutation_id) == ("noop", None, None)
    assert decide_new(shoe(), d.new_state).kind == "stale"  # T1 < T2


def test_older_tombstone_is_stale() -> None:
    created = decide_new(shoe(updated=T2))
    assert decide("product", f"product:{UUID}", created.new_state, None, T1).kind == "stale"


def test_mutation_id_is_deterministic() -> None:
    a = decide_new(shoe())
    b = decide_new(copy.deepcopy(shoe()))
    assert a.mutation_id == b.mutation_id
    assert decide_new(shoe(updated=T2)).mutation_id != a.mutation_id
    assert decide_new(shoe(enabled=False)).mutation_id != a.mutation_id
    assert decide("product", "product:other", None, shoe(), None).mutation_id != a.mutation_id


def test_stored_state_survives_a_json_round_trip() -> None:
    created = decide_new(shoe())
    stored = orjson.loads(orjson.dumps(created.new_state))
    assert decide_new(shoe(), stored).kind == "duplicate"


def test_decide_rejects_unknown_type_and_bad_version() -> None:
    with pytest.raises(InvalidSnapshot, match="unknown entity type"):
        decide("gadget", "gadget:x", None, {"code": "x"}, None)
    created = decide_new(shoe())
    with pytest.raises(InvalidSnapshot, match="not an ISO 8601"):
        decide_new(shoe(), created.new_state, version="yesterday")


def test_compare_versions_naive_is_utc() -> None:
    assert compare_versions("2024-01-01T10:00:00", "2024-01-01T10:00:00+00:00") == 0
    assert compare_versions("2024-01-01T10:00:00Z", "2024-01-01T11:00:00+02:00") == 1
    assert compare_versions(None, T1) is None


# --- every entity type --------------------------------------------------------------------

ENTITY_CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[Change]]] = [
    (
        "product_model",
        {
            "code": "tshirt",
            "family": "clothing",
            "family_variant": "by_size",
            "parent": None,
            "categories": ["tops"],
            "values": {"name": [{"locale": "en_US", "scope": None, "data": "Tee"}]},
        },
        {
            "code": "tshirt",
            "family": "clothing",
            "family_variant": "by_size",
            "parent": None,
            "categories": ["tops", "sale"],
            "values": {"name": [{"locale": "en_US", "scope": None, "data": "T-shirt"}]},
            "quantified_associations": {
                "PACK": {"products": [{"uuid": "p1", "quantity": 2}], "product_models": []}
            },
        },
        [
            Change("categories", added=("sale",), removed=()),
            Change("quantified_associations", "PACK.products", new=[{"uuid": "p1", "quantity": 2}]),
            Change("values", "name", "en_US", old="Tee", new="T-shirt"),
        ],
    ),
    (
        "category",
        {"code": "shoes", "parent": "master", "labels": {"en_US": "Shoes"}, "position": 1},
        {
            "code": "shoes",
            "parent": "men",
            "labels": {"en_US": "Shoes", "fr_FR": "Chaussures"},
            "position": 1,
        },
        [
            Change("labels", locale="fr_FR", new="Chaussures"),
            Change("parent", old="master", new="men"),
        ],
    ),
    (
        "family",
        {
            "code": "shoes",
            "attribute_as_label": "name",
            "attribute_as_image": None,
            "attributes": ["sku", "name"],
            "attribute_requirements": {"ecommerce": ["sku"]},
            "labels": {"en_US": "Shoes"},
        },
        {
            "code": "shoes",
            "attribute_as_label": "name",
            "attribute_as_image": "picture",
            "attributes": ["name", "sku", "picture"],
            "attribute_requirements": {"ecommerce": ["sku", "name"], "print": ["sku"]},
            "labels": {"en_US": "Shoes"},
        },
        [
            Change("attribute_as_image", new="picture"),
            Change("attribute_requirements", scope="ecommerce", added=("name",), removed=()),
            Change("attribute_requirements", scope="print", added=("sku",), removed=()),
            Change("attributes", added=("picture",), removed=()),
        ],
    ),
    (
        "family_variant",
        {
            "code": "by_size",
            "common_attributes": ["name"],
            "variant_attribute_sets": [{"level": 1, "axes": ["size"], "attributes": ["sku"]}],
            "labels": {"en_US": "By size"},
        },
        {
            "code": "by_size",
            "common_attributes": ["name"],
            "variant_attribute_sets": [
                {"level": 1, "axes": ["size", "color"], "attributes": ["sku", "ean"]}
            ],
            "labels": {"en_US": "By size and colour"},
        },
        [
            Change("labels", locale="en_US", old="By size", new="By size and colour"),
            Change("variant_attribute_sets", "1.attributes", added=("ean",), removed=()),
            Change("variant_attribute_sets", "1.axes", old=["size"], new=["size", "color"]),
        ],
    ),
    (
        "attribute",
        {
            "code": "weight",
            "type": "pim_catalog_metric",
            "group": "technical",
            "localizable": False,
            "scopable": False,
            "number_min": "0.0000",
            "metric_family": "Weight",
            "default_metric_unit": "KILOGRAM",
            "available_locales": [],
            "labels": {"en_US": "Weight"},
        },
        {
            "code": "weight",
            "type": "pim_catalog_metric",
            "group": "logistics",
            "localizable": False,
            "scopable": False,
            "number_min": "0",
            "metric_family": "Weight",
            "default_metric_unit": "GRAM",
            "available_locales": ["en_US"],
            "labels": {"en_US": "Weight"},
        },
        [
            Change("available_locales", added=("en_US",), removed=()),
            Change("default_metric_unit", old="KILOGRAM", new="GRAM"),
            Change("group", old="technical", new="logistics"),
        ],
    ),
    (
        "attribute_option",
        {"code": "red", "attribute": "color", "sort_order": 1, "labels": {"en_US": "Red"}},
        {
            "code": "red",
            "attribute": "color",
            "sort_order": 2,
            "labels": {"en_US": "Red", "de_DE": "Rot"},
        },
        [Change("labels", locale="de_DE", new="Rot"), Change("sort_order", old=1, new=2)],
    ),
    (
        "channel",
        {
            "code": "ecommerce",
            "locales": ["en_US", "fr_FR"],
            "currencies": ["EUR"],
            "category_tree": "master",
            "conversion_units": {"weight": "KILOGRAM"},
            "labels": {"en_US": "E-commerce"},
        },
        {
            "code": "ecommerce",
            "locales": ["fr_FR", "en_US", "de_DE"],
            "currencies": ["EUR"],
            "category_tree": "master",
            "conversion_units": {"weight": "GRAM"},
            "labels": {"en_US": "E-commerce"},
        },
        [
            Change("conversion_units", "weight", old="KILOGRAM", new="GRAM"),
            Change("locales", added=("de_DE",), removed=()),
        ],
    ),
    (
        "locale",
        {"code": "de_DE", "enabled": False},
        {"code": "de_DE", "enabled": True},
        [Change("enabled", old=False, new=True)],
    ),
]


@pytest.mark.parametrize(
    ("entity_type", "before", "after", "expected"),
    ENTITY_CASES,
    ids=[case[0] for case in ENTITY_CASES],
)
def test_every_entity_type_diffs_field_by_field(
    entity_type: str, before: dict[str, Any], after: dict[str, Any], expected: list[Change]
) -> None:
    key = entity_key(entity_type, before)
    created = decide(entity_type, key, None, before, T1)
    assert created.operation == "create"
    assert decide(entity_type, key, created.new_state, before, T1).kind == "duplicate"
    updated = decide(entity_type, key, created.new_state, after, T2)
    assert (updated.kind, updated.operation) == ("mutation", "update")
    assert list(updated.changes) == expected
    assert updated.state_payload is not None and updated.state_payload["code"] == after["code"]
    deleted = decide(entity_type, key, updated.new_state, None, T3)
    assert deleted.operation == "delete"
    assert deleted.state_payload == updated.state_payload


# --- records ------------------------------------------------------------------------------


def test_change_record_shape_round_trips() -> None:
    change = Change(
        "values", "price", None, "ecommerce", old=[{"amount": "1.00", "currency": "EUR"}], new=None
    )
    record = change_to_record(change)
    assert record == {
        "field": "values",
        "attribute": "price",
        "locale": None,
        "scope": "ecommerce",
        "old": '[{"amount":"1.00","currency":"EUR"}]',
        "new": None,
        "added": None,
        "removed": None,
    }
    assert change_from_record(record) == change
    set_record = change_to_record(Change("categories", added=("a",), removed=()))
    assert (set_record["added"], set_record["removed"], set_record["old"]) == (["a"], [], None)
    with pytest.raises(InvalidSnapshot):
        change_from_record({"attribute": "x"})


# --- apply and Event Platform deltas ---------------------------------------------------------


def test_apply_of_diff_rebuilds_target() -> None:
    a = index_state("product", shoe())
    changed = shoe(categories=["kids"], parent="runner_model")
    changed["values"]["colors"][0]["data"] = ["green"]
    del changed["values"]["name"]
    b = index_state("product", changed)
    assert apply(a, diff(a, b)) == b
    assert apply(b, diff(b, a)) == a


def delta(changes: dict[str, Any]) -> list[dict[str, Any]]:
    return [changes]


def test_delta_gives_the_same_decision_as_the_full_snapshot() -> None:
    created = decide_new(shoe())
    full = shoe(
        updated=T2,
        enabled=False,
        categories=["men", "winter"],
        associations={"X_SELL": {"products": ["p2", "p3"], "product_models": [], "groups": []}},
        quantified_associations={
            "PACK": {"products": [{"uuid": "p9", "quantity": 3}], "product_models": []}
        },
    )
    full["values"]["name"][0]["data"] = "Runner 2"
    full["values"]["price"][0]["data"] = [{"amount": "79.90", "currency": "EUR"}]
    changes = {
        "enabled": {"previous": True, "new": False},
        "categories": {"added": ["winter"], "removed": ["summer"]},
        "values": {
            "name": [
                {
                    "previous": "Runner",
                    "new": "Runner 2",
                    "type": "pim_catalog_text",
                    "locale": "en_US",
                    "scope": None,
                }
            ],
            "price": [
                {
                    "previous": [{"amount": "89.90", "currency": "EUR"}],
                    "new": [{"amount": "79.90", "currency": "EUR"}],
                    "type": "pim_catalog_price_collection",
                    "locale": None,
                    "scope": None,
                }
            ],
        },
        "associations": {
            "X_SELL": {"added": {"products": ["p3"]}, "removed": {"products": ["p1"]}}
        },
        "quantified_associations": {
            "PACK": {"added": {"products": [{"uuid": "p9", "quantity": 3}]}, "removed": {}}
        },
    }
    from_delta = decide_delta("product", f"product:{UUID}", created.new_state, delta(changes), T2)
    from_full = decide_new(full, created.new_state)
    assert from_delta.operation == "update"
    assert from_delta == from_full


def test_delta_to_identical_content_is_noop() -> None:
    created = decide_new(shoe())
    d = decide_delta(
        "product",
        f"product:{UUID}",
        created.new_state,
        delta({"enabled": {"previous": True, "new": True}}),
        T2,
    )
    assert d.kind == "noop"


def test_delta_accepts_change_records() -> None:
    created = decide_new(shoe())
    record = change_to_record(Change("values", "name", "fr_FR", new="Coureur rapide"))
    d = decide_delta("product", f"product:{UUID}", created.new_state, [record], T2)
    assert d.changes == (Change("values", "name", "fr_FR", old="Coureur", new="Coureur rapide"),)


def test_delta_without_stored_state_or_older_is_refused() -> None:
    with pytest.raises(DeltaWithoutBase, match=f"product:{UUID}"):
        decide_delta("product", f"product:{UUID}", None, [], T2)
    created = decide_new(shoe(updated=T2))
    assert (
        decide_delta(
            "product",
            f"product:{UUID}",
            created.new_state,
            delta({"enabled": {"previous": True, "new": False}}),
            T1,
        ).kind
        == "stale"
    )


@pytest.mark.parametrize(
    "bad",
    [
        [{"values": "nope"}],
        [{"enabled": "nope"}],
        ["nope"],
        [{"associations": {"X_SELL": {"added": 3}}}],
    ],
)
def test_malformed_delta_is_invalid(bad: list[Any]) -> None:
    created = decide_new(shoe())
    with pytest.raises(InvalidSnapshot):
        apply_delta(created.new_state, bad)


@pytest.mark.parametrize(
    ("updated_at", "expected"),
    [
        ({"date": "2024-05-02 10:11:12.000000", "timezone": "UTC"}, "2024-05-02T10:11:12+00:00"),
        ({"date": "2024-05-02 10:11:12", "timezone": "+02:00"}, "2024-05-02T10:11:12+02:00"),
        ("2024-05-02T10:11:12+00:00", "2024-05-02T10:11:12+00:00"),
    ],
)
def test_delta_version(updated_at: Any, expected: str) -> None:
    assert delta_version(updated_at) == expected


def test_delta_version_rejects_named_zones() -> None:
    with pytest.raises(InvalidSnapshot, match="timezone"):
        delta_version({"date": "2024-05-02 10:11:12", "timezone": "Europe/Paris"})


def test_content_hash_keeps_the_formula_mutation_ids_were_built_with() -> None:
    text, number = "pim_catalog_text", "pim_catalog_number"
    # Changing the hashed bytes would mint new mutation ids for the same content on replay.
    payload = shoe(
        values={
            "name": [
                {"locale": "fr_FR", "scope": None, "data": "Chaussure é ✓", "attribute_type": text},
                {"locale": "en_US", "scope": "print", "data": "Shoe", "attribute_type": text},
            ],
            "weight": [
                {"locale": None, "scope": None, "data": "12.5000", "attribute_type": number},
            ],
            "price": [
                {
                    "locale": None,
                    "scope": None,
                    "data": [{"amount": "10.50", "currency": "EUR"}],
                    "attribute_type": "pim_catalog_price_collection",
                }
            ],
        },
        categories=["b", "a"],
    )
    for state in (index_state("product", payload), decide_new(payload).new_state):
        assert state is not None
        body = dumps({"c": state["c"], "s": state["s"]}).encode()
        assert content_hash(state) == hashlib.blake2b(body, digest_size=16).hexdigest()
        # The table gives the state back from JSON: the hash must not depend on that.
        assert content_hash(orjson.loads(orjson.dumps(state))) == content_hash(state)
    created = decide_new(payload, version=T1)
    body = dumps({"c": created.new_state["c"], "s": created.new_state["s"]}).encode()
    digest = hashlib.blake2b(body, digest_size=16).hexdigest()
    assert created.mutation_id == mutation_id(f"product:{UUID}", T1, digest)


@pytest.mark.parametrize(
    ("attribute_type", "before", "after", "changed"),
    [
        # bool and int are equal in Python but not to the normaliser
        ("pim_catalog_text", [("en_US", True), ("fr_FR", 1)], 1, ["en_US"]),
        ("vendor_type", [("en_US", [1, 0]), ("fr_FR", [0])], [True, False], ["en_US"]),
        # 1 and 1.0 are the same decimal: no change, but the new source is what was sent
        ("pim_catalog_text", [("en_US", 1), ("fr_FR", 2)], 1.0, []),
    ],
)
def test_numbers_and_booleans_that_python_finds_equal_are_compared_exactly(
    attribute_type: str, before: list[tuple[str, Any]], after: Any, changed: list[str]
) -> None:
    old = shoe(
        values={
            "n": [
                {"locale": loc, "scope": None, "data": d, "attribute_type": attribute_type}
                for loc, d in before
            ]
        }
    )
    new = copy.deepcopy(old)
    new["values"]["n"][0]["data"] = after
    a, b = index_state("product", old), index_state("product", new)
    assert [c.locale for c in diff(a, b)] == changed
    source = source_of(b, "values|n|en_US|")
    assert source == after and type(source) is type(after)


# --- fields kept in the state but not compared -----------------------------------------------

READ_ONLY = {
    "created": "2024-01-01T08:00:00+00:00",
    "metadata": {"workflow_status": "working_copy"},
    "quality_scores": [{"scope": "ecommerce", "locale": "en_US", "data": "B"}],
    "completenesses": [{"scope": "ecommerce", "locale": "en_US", "data": 80}],
    "_links": {"self": {"href": f"https://pim.example/api/rest/v1/products-uuid/{UUID}"}},
}


def linked_shoe(**overrides: Any) -> dict[str, Any]:
    payload = shoe(**{**READ_ONLY, **overrides})
    payload["values"]["colors"][0]["linked_data"] = {
        "attribute": "colors",
        "code": "red",
        "labels": {"en_US": "Red"},
    }
    return payload


def test_read_only_fields_and_linked_data_are_kept_in_the_state() -> None:
    d = decide_new(linked_shoe())
    assert d.state_payload is not None
    for field, value in READ_ONLY.items():
        assert d.state_payload[field] == value
    assert d.state_payload["updated"] == T1
    [colors] = d.state_payload["values"]["colors"]
    assert colors["linked_data"]["labels"] == {"en_US": "Red"}
    # ... and none of them is a change, nor part of the mutation id.
    assert {c.field for c in d.changes}.isdisjoint(READ_ONLY)
    assert d.mutation_id == decide_new(shoe()).mutation_id


def test_read_only_fields_alone_make_no_mutation_but_the_next_one_carries_them() -> None:
    created = decide_new(linked_shoe())
    later = linked_shoe(
        updated=T2, quality_scores=[{"scope": "ecommerce", "locale": "en_US", "data": "A"}]
    )
    later["values"]["colors"][0]["linked_data"]["labels"] = {"en_US": "Crimson"}
    d = decide_new(later, created.new_state)
    assert (d.kind, d.changes, d.mutation_id) == ("noop", (), None)
    assert d.new_state is not None  # remembered, with the new version
    # The same snapshot again (every snapshot carries `created`): still nothing.
    assert decide_new(later, d.new_state).kind == "duplicate"
    changed = copy.deepcopy(later)
    changed["updated"] = T3
    changed["enabled"] = False
    m = decide_new(changed, d.new_state)
    assert [c.field for c in m.changes] == ["enabled"]
    assert m.state_payload is not None
    assert m.state_payload["quality_scores"][0]["data"] == "A"
    assert m.state_payload["created"] == READ_ONLY["created"]
    assert m.state_payload["values"]["colors"][0]["linked_data"]["labels"] == {"en_US": "Crimson"}


def test_a_delta_keeps_read_only_fields_and_drops_the_linked_data_of_a_changed_value() -> None:
    created = decide_new(linked_shoe())
    assert created.new_state is not None
    state = apply(created.new_state, [Change("values", "colors", new=["green"])])
    from pim_hub.services.mutator.core.normalise import denormalise

    payload = denormalise(state)
    assert payload["created"] == READ_ONLY["created"]
    assert "linked_data" not in payload["values"]["colors"][0]  # it named "red"
    assert "linked_data" in denormalise(created.new_state)["values"]["colors"][0]
    kept = apply(created.new_state, [Change("enabled", new=False)])
    assert denormalise(kept)["values"]["colors"][0]["linked_data"]["code"] == "red"


def test_states_without_read_only_fields_are_as_before() -> None:
    state = index_state("product", shoe())
    assert set(state) == {"t", "v", "c", "s", "a"}
