"""The generated catalogue: determinism, structure, edits, flat memory at 100k products."""

from __future__ import annotations

import random
import tracemalloc
from datetime import UTC, datetime

import pytest

from pim_hub.sandbox.akeneo.catalogue import Catalogue, CatalogueError
from pim_hub.sandbox.akeneo.reference import ATTRIBUTES, FAMILY_BY_CODE


def test_same_seed_gives_the_same_catalogue_and_another_seed_differs() -> None:
    a, b, c = Catalogue(300, seed=5), Catalogue(300, seed=5), Catalogue(300, seed=6)
    for n in (0, 17, 299):
        assert a.product_at(n) == b.product_at(n)
        assert a.product_at(n) != c.product_at(n)
    assert list(a.iter_model_codes()) == list(b.iter_model_codes())


def test_reference_data_has_the_promised_shape() -> None:
    cat = Catalogue(10)
    types = {a.type for a in ATTRIBUTES}
    assert len(cat.attributes) == 60
    assert {
        "pim_catalog_identifier", "pim_catalog_text", "pim_catalog_textarea", "pim_catalog_number",
        "pim_catalog_boolean", "pim_catalog_date", "pim_catalog_simpleselect",
        "pim_catalog_multiselect", "pim_catalog_price_collection", "pim_catalog_metric",
        "pim_catalog_image",
    } == types  # fmt: skip
    assert [loc["code"] for loc in cat.locales if loc["enabled"]] == ["en_US", "fr_FR", "de_DE"]
    assert [ch["code"] for ch in cat.channels] == ["ecommerce", "mobile"]
    roots = [c for c in cat.categories if c["parent"] is None]
    assert [r["code"] for r in roots] == ["master"]
    codes = {c["code"] for c in cat.categories}
    assert all(c["parent"] in codes for c in cat.categories if c["parent"])
    assert all(o["code"] for opts in cat.attribute_options.values() for o in opts)


def test_uuids_round_trip_and_unknown_uuids_do_not_resolve() -> None:
    cat = Catalogue(1000, seed=9)
    uuids = {cat.product_uuid(n) for n in range(1000)}
    assert len(uuids) == 1000
    assert all(cat.product_index(cat.product_uuid(n)) == n for n in (0, 1, 500, 999))
    assert cat.product_index("5b6d1e5c-0000-4000-8000-000000000000") is None
    assert cat.product_index("not-a-uuid") is None
    assert Catalogue(1000, seed=10).product_index(cat.product_uuid(3)) is None


def test_variants_belong_to_models_of_their_family_variant() -> None:
    cat = Catalogue(400, seed=2)
    variants = [p for p in cat.iter_products() if p["parent"]]
    assert len(variants) > 40
    for product in variants:
        model = cat.get_product_model(product["parent"])
        assert model is not None
        assert model["family"] == product["family"]
        _, variant_def = next(
            (f, v)
            for f in [FAMILY_BY_CODE[product["family"]]]
            for v in f.variants
            if v.code == model["family_variant"]
        )
        last_axes = variant_def.level2_axes or variant_def.level1_axes
        assert all(axis in product["values"] for axis in last_axes)
    two_level = [c for c in cat.iter_model_codes() if c.count("_") == 2]
    assert two_level, "the seed should produce sub-models"
    sub = cat.get_product_model(two_level[0])
    assert sub is not None and sub["parent"] == "_".join(two_level[0].split("_")[:2])


def test_edit_changes_values_and_bumps_updated() -> None:
    clock_value = datetime(2030, 1, 1, tzinfo=UTC)
    cat = Catalogue(50, seed=1, clock=lambda: clock_value)
    target = next(p for p in cat.iter_products() if not p["parent"])
    change = cat.update_product(
        target["uuid"], values={"name": [{"locale": "fr_FR", "scope": None, "data": "Nouveau"}]}
    )
    assert change.before == target and change.after is not None
    assert change.after["updated"] == "2030-01-01T00:00:00+00:00"
    names = {e["locale"]: e["data"] for e in change.after["values"]["name"]}
    assert names["fr_FR"] == "Nouveau"
    # A second edit in the same second still moves `updated` forward (delta syncs see it).
    again = cat.set_enabled(target["uuid"], False)
    assert again.after is not None and again.after["enabled"] is False
    assert again.after["updated"] == "2030-01-01T00:00:01+00:00"


def test_delete_and_create_change_the_live_set() -> None:
    cat = Catalogue(20, seed=1)
    gone = cat.delete_product(cat.product_uuid(4))
    assert gone.action == "removed" and cat.get_product(gone.key) is None
    created = cat.create_product(family="books", categories=["fiction"])
    assert created.after is not None and created.after["family"] == "books"
    assert cat.get_product(created.key) == created.after
    assert cat.product_count == 20
    assert created.key in [p["uuid"] for p in cat.iter_products()]


@pytest.mark.parametrize(
    "values",
    [
        {"isbn": [{"locale": None, "scope": None, "data": "x"}]},  # not in the family
        {"name": [{"locale": None, "scope": None, "data": "x"}]},  # localizable without locale
        {"color": [{"locale": None, "scope": None, "data": "plaid"}]},  # unknown option
    ],
)
def test_invalid_edits_are_refused(values: dict[str, list[dict[str, object]]]) -> None:
    cat = Catalogue(20, seed=1)
    product = cat.create_product(family="clothing").after
    assert product is not None
    with pytest.raises(CatalogueError):
        cat.update_product(product["uuid"], values=values)


def test_random_edits_always_produce_a_consistent_change() -> None:
    cat = Catalogue(100, seed=4)
    rng = random.Random(1)
    for _ in range(50):
        change = cat.random_edit(rng)
        current = (
            cat.get_product(change.key)
            if change.entity == "product"
            else cat.get_product_model(change.key)
        )
        assert current == change.after


def test_memory_stays_flat_for_a_100k_catalogue() -> None:
    tracemalloc.start()
    try:
        cat = Catalogue(100_000, seed=3)
        built, _ = tracemalloc.get_traced_memory()
        count = sum(1 for _ in cat.iter_product_indexes())
        for n in range(99_000, 99_400):  # products from the far end
            assert cat.product_at(n) is not None
        after_1k, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for n in range(99_400, 100_000):  # more of them: retained memory must not grow
            assert cat.product_at(n) is not None
        after_3k, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert built < 2_000_000  # reference data only; no product is materialised up front
    # Retained memory does not grow with the number of products generated (only the
    # bounded model cache is kept), and generating never holds more than a few products.
    assert after_3k - after_1k < 200_000
    assert after_3k - built < 2_000_000
    assert peak - after_1k < 2_000_000
