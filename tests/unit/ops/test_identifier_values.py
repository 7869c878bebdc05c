"""Identifier values of a product state, for SKU look-ups in the mutation log."""

from __future__ import annotations

from pim_hub.ops.trace import identifier_values


def test_values_of_identifier_attributes_count_only_unlocalised_and_unscoped() -> None:
    state = {
        "values": {
            "ean": [{"locale": None, "scope": None, "data": "4006381333931"}],
            "name": [{"locale": "en_US", "scope": None, "data": "4006381333931"}],
            "code": [{"locale": None, "scope": "web", "data": "X"}],
        }
    }
    assert identifier_values(state, {"ean"}) == {"4006381333931"}
    assert identifier_values(state, {"name", "code"}) == set()
    assert identifier_values(state, set()) == set()


def test_a_value_marked_as_identifier_counts_without_the_attribute_snapshot() -> None:
    state = {
        "values": {
            "sku": [
                {
                    "locale": None,
                    "scope": None,
                    "data": "S1",
                    "attribute_type": "pim_catalog_identifier",
                }
            ]
        }
    }
    assert identifier_values(state, set()) == {"S1"}
    assert identifier_values({"values": []}, {"sku"}) == set()
