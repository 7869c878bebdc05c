"""Property-based tests (hypothesis) of index_state, diff, apply and decide."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pim_hub.services.mutator.core.apply import apply
from pim_hub.services.mutator.core.diffing import decide, diff, index_state
from pim_hub.services.mutator.core.normalise import denormalise, source_of

LOCALES = [None, "en_US", "fr_FR"]
SCOPES = [None, "ecommerce"]
CODES = st.sampled_from(["a", "b", "c", "d", "e"])
DECIMALS = st.decimals(
    min_value=Decimal("-1000"),
    max_value=Decimal("1000"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)


def decimal_text(canonical: bool) -> st.SearchStrategy[str]:
    if canonical:
        # What index_state would compare with: no trailing zeros, so source == comparison.
        return DECIMALS.map(lambda d: format(d.normalize(), "f") if d else "0")
    # Akeneo-style padded text and bare forms, so "1.5000" vs "1.5" occurs.
    return st.one_of(DECIMALS.map(lambda d: f"{d:.4f}"), DECIMALS.map(str))


def data_for(attribute_type: str, canonical: bool) -> st.SearchStrategy[Any]:
    codes = st.lists(CODES, max_size=4, unique=True)
    if attribute_type == "pim_catalog_text":
        return st.text(max_size=8)
    if attribute_type == "pim_catalog_number":
        return decimal_text(canonical)
    if attribute_type == "pim_catalog_boolean":
        return st.booleans()
    if attribute_type == "pim_catalog_multiselect":
        return codes.map(sorted) if canonical else codes
    if attribute_type == "pim_catalog_asset_collection":
        return codes
    if attribute_type == "pim_catalog_price_collection":
        return st.lists(
            st.fixed_dictionaries(
                {
                    "amount": decimal_text(canonical),
                    "currency": st.sampled_from(["EUR", "USD", "GBP"]),
                }
            ),
            max_size=3,
            unique_by=lambda p: p["currency"],
        )
    if attribute_type == "pim_catalog_metric":
        return st.fixed_dictionaries(
            {"amount": decimal_text(canonical), "unit": st.sampled_from(["GRAM", "KILOGRAM"])}
        )
    if attribute_type == "pim_catalog_table":
        return st.lists(st.fixed_dictionaries({"col": CODES, "qty": st.integers(0, 3)}), max_size=2)
    return st.one_of(
        st.none(), st.integers(-5, 5), st.text(max_size=3), st.lists(st.integers(0, 3), max_size=2)
    )  # opaque vendor type


ATTRIBUTES = {
    "name": "pim_catalog_text",
    "weight_n": "pim_catalog_number",
    "flag": "pim_catalog_boolean",
    "colors": "pim_catalog_multiselect",
    "assets": "pim_catalog_asset_collection",
    "price": "pim_catalog_price_collection",
    "weight": "pim_catalog_metric",
    "nutrition": "pim_catalog_table",
    "custom": "vendor_custom_type",
}


@st.composite
def products(draw: st.DrawFn, canonical: bool = False) -> dict[str, Any]:
    values: dict[str, list[dict[str, Any]]] = {}
    for attribute in draw(st.lists(st.sampled_from(sorted(ATTRIBUTES)), unique=True)):
        attribute_type = ATTRIBUTES[attribute]
        keys = draw(
            st.lists(
                st.tuples(st.sampled_from(LOCALES), st.sampled_from(SCOPES)),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        values[attribute] = [
            {
                "locale": loc,
                "scope": sc,
                "data": draw(data_for(attribute_type, canonical)),
                "attribute_type": attribute_type,
            }
            for loc, sc in keys
        ]
    codes = st.lists(CODES, max_size=4, unique=True)
    ordered = codes.map(sorted) if canonical else codes
    return {
        "uuid": "u-1",
        "enabled": draw(st.booleans()),
        "family": draw(st.one_of(st.none(), st.sampled_from(["shoes", "shirts"]))),
        "parent": draw(st.one_of(st.none(), st.just("model_1"))),
        "categories": draw(ordered),
        "groups": draw(ordered),
        "values": values,
        "associations": {
            t: {"products": draw(ordered), "product_models": draw(ordered), "groups": []}
            for t in draw(st.lists(st.sampled_from(["X_SELL", "UPSELL"]), unique=True))
        },
        "quantified_associations": {
            "PACK": {
                "products": draw(
                    st.lists(
                        st.fixed_dictionaries({"uuid": CODES, "quantity": st.integers(1, 3)}),
                        max_size=2,
                        unique_by=lambda p: p["uuid"],
                    ).map(
                        # Quantified targets compare as a set: canonical source text is sorted.
                        (lambda ps: sorted(ps, key=lambda p: str(p["uuid"])))
                        if canonical
                        else (lambda ps: ps)
                    )
                ),
                "product_models": [],
            }
        },
    }


@st.composite
def families(draw: st.DrawFn) -> dict[str, Any]:
    codes = st.lists(CODES, max_size=4, unique=True)
    return {
        "code": "shoes",
        "attribute_as_label": draw(st.sampled_from(["name", "title"])),
        "attributes": draw(codes),
        "attribute_requirements": {
            ch: draw(codes)
            for ch in draw(st.lists(st.sampled_from(["ecommerce", "print"]), unique=True))
        },
        "labels": {
            loc: draw(st.text(max_size=4))
            for loc in draw(st.lists(st.sampled_from(["en_US", "fr_FR"]), unique=True))
        },
    }


def shuffled(payload: dict[str, Any], rnd: Any) -> dict[str, Any]:
    """The same product with every order-insensitive list and the price entries reordered."""
    out = copy.deepcopy(payload)
    for field in ("categories", "groups"):
        rnd.shuffle(out[field])
    for targets in out["associations"].values():
        for kind in targets:
            rnd.shuffle(targets[kind])
    for targets in out["quantified_associations"].values():
        rnd.shuffle(targets["products"])
    for items in out["values"].values():
        rnd.shuffle(items)
        for item in items:
            if item["attribute_type"] in (
                "pim_catalog_multiselect",
                "pim_catalog_price_collection",
            ):
                rnd.shuffle(item["data"])
    rnd.shuffle(order := list(out["values"].items()))
    out["values"] = dict(order)
    return out


@settings(max_examples=75, deadline=None)
@given(products(canonical=True), products(canonical=True))
def test_apply_diff_gives_target_exactly(
    a_payload: dict[str, Any], b_payload: dict[str, Any]
) -> None:
    a = index_state("product", a_payload)
    b = index_state("product", b_payload)
    assert apply(a, diff(a, b)) == b


@settings(max_examples=75, deadline=None)
@given(products(), products())
def test_apply_diff_gives_target_content_keeping_unchanged_source(
    a_payload: dict[str, Any], b_payload: dict[str, Any]
) -> None:
    # With free-form source text, a slot whose comparison is equal ("1.5000" vs "1.5") is
    # no change, so it keeps the old source text; everything else is b's.
    a = index_state("product", a_payload)
    b = index_state("product", b_payload)
    result = apply(a, diff(a, b))
    assert result["c"] == b["c"]
    assert result["a"] == b["a"]
    for slot, cmp in b["c"].items():
        expected = source_of(b, slot) if a["c"].get(slot) != cmp else source_of(a, slot)
        assert source_of(result, slot) == expected


@settings(max_examples=100, deadline=None)
@given(families(), families())
def test_apply_diff_on_families(a_payload: dict[str, Any], b_payload: dict[str, Any]) -> None:
    a = index_state("family", a_payload)
    b = index_state("family", b_payload)
    assert apply(a, diff(a, b)) == b


@settings(max_examples=100, deadline=None)
@given(products())
def test_diff_with_itself_is_empty(payload: dict[str, Any]) -> None:
    state = index_state("product", payload)
    assert diff(state, state) == []
    assert diff(state, orjson.loads(orjson.dumps(state))) == []


@settings(max_examples=100, deadline=None)
@given(products(), st.randoms(use_true_random=False))
def test_set_like_lists_are_order_insensitive(payload: dict[str, Any], rnd: Any) -> None:
    a = index_state("product", payload)
    b = index_state("product", shuffled(payload, rnd))
    assert diff(a, b) == []
    assert a["c"] == b["c"]


@settings(max_examples=100, deadline=None)
@given(products(), products())
def test_decide_emits_exactly_the_diff(
    a_payload: dict[str, Any], b_payload: dict[str, Any]
) -> None:
    first = decide("product", "product:u-1", None, a_payload, "2024-01-01T00:00:00+00:00")
    second = decide(
        "product", "product:u-1", first.new_state, b_payload, "2024-01-02T00:00:00+00:00"
    )
    expected = [
        c
        for c in diff(index_state("product", a_payload), index_state("product", b_payload))
        if not c.field.startswith("_")
    ]
    assert list(second.changes) == expected
    assert (second.kind == "mutation") == bool(expected)
    replay = decide(
        "product", "product:u-1", first.new_state, b_payload, "2024-01-02T00:00:00+00:00"
    )
    assert replay.mutation_id == second.mutation_id


def values_slot_by_slot(state: dict[str, Any]) -> dict[str, Any]:
    """Product values rebuilt one slot at a time, each source read on its own (reference)."""
    values: dict[str, Any] = {}
    for slot in sorted(state["c"]):
        if slot.startswith("values|"):
            attribute, locale, scope = slot[len("values|") :].rsplit("|", 2)
            item = {"locale": locale or None, "scope": scope or None}
            item["data"] = source_of(state, slot)
            if attribute in state["a"]:
                item["attribute_type"] = state["a"][attribute]
            values.setdefault(attribute, []).append(item)
    return values


@settings(max_examples=150, deadline=None)
@given(products())
def test_denormalise_gives_each_slot_its_source(payload: dict[str, Any]) -> None:
    # Sources are parsed in one batch and slot parts are cached: the output must be exactly
    # (byte for byte) what reading every slot on its own gives, and index back to the content.
    state = orjson.loads(orjson.dumps(index_state("product", payload)))
    for _ in range(2):  # the second call reads slot parts from the cache
        out = denormalise(state)
        assert orjson.dumps(out["values"]) == orjson.dumps(values_slot_by_slot(state))
        # (the types of attributes left with no value have no item to carry them)
        again = index_state("product", out)
        assert (again["c"], again["s"]) == (state["c"], state["s"])
