"""The field-level version guard, case by case."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pim_hub.schemas.events import Change
from pim_hub.services.dispatcher.core.guard import (
    DELETED_FIELD,
    ENTITY_FIELD,
    Delivered,
    decide,
    field_key,
    parse_version,
)

V1, V2, V3 = "2024-01-01T00:00:01+00:00", "2024-01-01T00:00:02+00:00", "2024-01-01T00:00:03+00:00"
NAME = Change(field="values", attribute="name", locale="en_US", scope=None, new='"x"')
PRICE = Change(field="values", attribute="price", locale=None, scope="web", new="1")
NAME_KEY, PRICE_KEY = field_key(NAME), field_key(PRICE)


def at(version: str, job: str = "other") -> Delivered:
    dt = parse_version(version)
    assert dt is not None
    return Delivered(dt, job)


def test_field_key_joins_field_attribute_locale_scope() -> None:
    assert NAME_KEY == "values|name|en_US|"
    assert PRICE_KEY == "values|price||web"


def test_nothing_delivered_yet_delivers_everything() -> None:
    dec = decide("j", "update", [NAME, PRICE], V1, {})
    assert dec.verdict == "deliver"
    assert dec.keep == (0, 1)
    assert set(dec.record) == {NAME_KEY, PRICE_KEY}


def test_all_changes_older_is_stale_with_a_reason() -> None:
    dec = decide("j", "update", [NAME, PRICE], V1, {NAME_KEY: at(V2), PRICE_KEY: at(V3)})
    assert dec.verdict == "stale"
    assert dec.keep == ()
    assert dec.record == {}
    assert dec.reason and "older" in dec.reason


def test_partly_older_keeps_only_the_newer_changes() -> None:
    dec = decide("j", "update", [NAME, PRICE], V2, {NAME_KEY: at(V3)})
    assert dec.verdict == "partial"
    assert dec.keep == (1,)
    assert set(dec.record) == {PRICE_KEY}


def test_same_mutation_delivered_before_is_recognised() -> None:
    dec = decide("m", "update", [NAME], V2, {NAME_KEY: at(V2, "m")})
    assert dec.verdict == "already"


def test_same_version_from_another_mutation_is_delivered_live() -> None:
    # Two edits within one source second: the later arrival wins, in log order.
    assert decide("m", "update", [NAME], V2, {NAME_KEY: at(V2, "k")}).verdict == "deliver"


def test_delete_older_than_a_delivered_update_is_stale() -> None:
    dec = decide("d", "delete", [], V1, {NAME_KEY: at(V2)})
    assert dec.verdict == "stale"


def test_newer_delete_is_delivered_and_recorded_on_the_entity() -> None:
    dec = decide("d", "delete", [], V3, {NAME_KEY: at(V2)})
    assert dec.verdict == "deliver"
    assert dec.record[ENTITY_FIELD] == parse_version(V3)


@pytest.mark.parametrize("operation", ["update", "create"])
def test_update_or_create_older_than_a_delivered_delete_is_stale(operation: str) -> None:
    dec = decide(
        "u", operation, [NAME], V1, {ENTITY_FIELD: at(V2, "d"), DELETED_FIELD: at(V2, "d")}
    )
    assert dec.verdict == "stale"
    assert dec.reason and "deleted" in dec.reason


def test_create_after_a_delete_is_delivered() -> None:
    dec = decide("c", "create", [NAME, PRICE], V3, {ENTITY_FIELD: at(V2, "d"), NAME_KEY: at(V1)})
    assert dec.verdict == "deliver"
    assert set(dec.record) == {NAME_KEY, PRICE_KEY, ENTITY_FIELD}


def test_replay_force_bypasses_the_guard() -> None:
    dec = decide("j", "update", [NAME], V1, {NAME_KEY: at(V3)}, mode="replay-force")
    assert dec.verdict == "deliver"
    assert dec.force


@pytest.mark.parametrize("mode", ["live", "replay-guarded", "redrive", "resync"])
def test_other_modes_obey_the_guard(mode: str) -> None:
    assert decide("j", "update", [NAME], V1, {NAME_KEY: at(V3)}, mode=mode).verdict == "stale"


def test_no_version_delivers_and_records_nothing() -> None:
    dec = decide("j", "update", [NAME], None, {NAME_KEY: at(V3)})
    assert dec.verdict == "deliver"
    assert dec.record == {}


def test_version_without_offset_is_utc() -> None:
    assert parse_version("2024-01-01T00:00:00") == datetime(2024, 1, 1, tzinfo=UTC)


# ---- the table of docs/delivery-semantics.md, row by row ----------------------------------

GONE_V2 = {ENTITY_FIELD: at(V2, "del"), DELETED_FIELD: at(V2, "del")}


@pytest.mark.parametrize(
    ("operation", "changes", "version", "stored", "mode", "verdict"),
    [
        # The target has exactly this mutation's change: whatever the job (a replay's new id).
        ("update", [NAME], V2, {NAME_KEY: at(V2, "m")}, "replay-guarded", "already"),
        ("update", [NAME], V2, {NAME_KEY: at(V2, "m")}, "resync", "already"),
        (
            "create",
            [NAME, PRICE],
            V1,
            {ENTITY_FIELD: at(V1, "m"), NAME_KEY: at(V1, "m"), PRICE_KEY: at(V1, "m")},
            "replay-guarded",
            "already",
        ),
        # A create whose fields were all updated since: nothing of it goes out again.
        (
            "create",
            [NAME, PRICE],
            V1,
            {ENTITY_FIELD: at(V1, "m"), NAME_KEY: at(V2), PRICE_KEY: at(V3)},
            "replay-guarded",
            "already",
        ),
        # Catching up, the version the target holds counts as delivered, whoever sent it.
        ("update", [NAME], V2, {NAME_KEY: at(V2, "k")}, "replay-guarded", "already"),
        # ... but what it lacks goes out (a change that was dead, then fixed).
        ("update", [NAME], V2, {NAME_KEY: at(V1, "k")}, "replay-guarded", "deliver"),
        # A deletion at V wins over an update or a creation at V, whatever the order.
        ("update", [NAME], V2, GONE_V2, "live", "stale"),
        ("update", [NAME], V2, GONE_V2, "replay-guarded", "stale"),
        ("create", [NAME], V2, GONE_V2, "live", "stale"),
        ("delete", [], V2, {**GONE_V2, NAME_KEY: at(V2, "u")}, "replay-guarded", "already"),
        ("delete", [], V2, {NAME_KEY: at(V2, "u")}, "live", "deliver"),
        ("delete", [], V2, {NAME_KEY: at(V3, "u")}, "live", "stale"),
        # After the deletion, a newer creation is delivered.
        ("create", [NAME], V3, GONE_V2, "live", "deliver"),
        # A forced (older) creation after a deletion ends the deletion: updates go out again.
        ("update", [NAME], V3, {**GONE_V2, ENTITY_FIELD: at(V1, "c")}, "live", "deliver"),
    ],
)
def test_semantics_table(
    operation: str,
    changes: list[Change],
    version: str,
    stored: dict[str, Delivered],
    mode: str,
    verdict: str,
) -> None:
    assert decide("m", operation, changes, version, stored, mode).verdict == verdict


def test_a_deletion_records_its_marker_beside_the_entity() -> None:
    dec = decide("d", "delete", [], V2, {})
    assert set(dec.record) == {ENTITY_FIELD, DELETED_FIELD}


# Sources (HUB_SOURCES): the ERP owns the stock; its clock is compared only with itself.
STOCK = Change(field="values", attribute="stock", locale=None, scope=None, new="17")
STOCK_KEY = field_key(STOCK)
ERP_OLD, ERP_NEW = "2020-05-02T10:00:00+00:00", "2020-05-03T10:00:00+00:00"


def erp_owns(key: str) -> bool:
    return key.startswith("values|stock|")


def test_a_source_patch_is_not_compared_with_akeneo_s_create() -> None:
    created = {ENTITY_FIELD: at(V2, "c"), NAME_KEY: at(V2, "c")}
    assert decide("p", "update", [STOCK], ERP_OLD, created).verdict == "stale"  # one clock
    dec = decide("p", "update", [STOCK], ERP_OLD, created, foreign=erp_owns)
    assert dec.verdict == "deliver" and set(dec.record) == {STOCK_KEY}
    # Its own older patch is still stale: the ERP's versions are compared with each other.
    later = {**created, STOCK_KEY: at(ERP_NEW, "p2")}
    assert decide("p", "update", [STOCK], ERP_OLD, later, foreign=erp_owns).verdict == "stale"


def test_an_akeneo_delete_is_not_compared_with_a_source_s_clock() -> None:
    ahead = {NAME_KEY: at(V1), STOCK_KEY: at("2030-01-01T00:00:00+00:00", "p")}
    assert decide("d", "delete", [], V2, ahead).verdict == "stale"  # one clock
    assert decide("d", "delete", [], V2, ahead, foreign=erp_owns).verdict == "deliver"
    # Akeneo's own updates still obey Akeneo's create.
    created = {ENTITY_FIELD: at(V2, "c")}
    assert decide("u", "update", [NAME], V1, created, foreign=erp_owns).verdict == "stale"
