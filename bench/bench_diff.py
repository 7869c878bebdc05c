"""Benchmark of the field-level diff engine against deepdiff.DeepDiff on the same product pairs."""

from __future__ import annotations

import copy
import gc
import random
import sys
import time
from typing import Any

import orjson
from deepdiff import DeepDiff

from pim_hub.services.mutator.core.diffing import decide, diff, index_state

LOCALES = ["en_US", "fr_FR", "de_DE"]
CHANNELS = ["ecommerce", "print"]
TYPES = [
    "pim_catalog_text",
    "pim_catalog_textarea",
    "pim_catalog_number",
    "pim_catalog_boolean",
    "pim_catalog_date",
    "pim_catalog_simpleselect",
    "pim_catalog_multiselect",
    "pim_catalog_price_collection",
    "pim_catalog_metric",
    "pim_catalog_image",
    "akeneo_reference_entity",
    "pim_catalog_table",
]


def _data(attribute_type: str, rnd: random.Random) -> Any:
    n = rnd.randint(1, 10_000)
    if attribute_type == "pim_catalog_text":
        return f"Text value {n}"
    if attribute_type == "pim_catalog_textarea":
        return f"<p>A longer description of the product, variant {n}, with some markup.</p>"
    if attribute_type == "pim_catalog_number":
        return f"{n / 100:.4f}"
    if attribute_type == "pim_catalog_boolean":
        return bool(n % 2)
    if attribute_type == "pim_catalog_date":
        return f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}T00:00:00+00:00"
    if attribute_type == "pim_catalog_simpleselect":
        return f"option_{n % 20}"
    if attribute_type == "pim_catalog_multiselect":
        return [f"option_{(n + i) % 30}" for i in range(3)]
    if attribute_type == "pim_catalog_price_collection":
        return [{"amount": f"{n / 100:.2f}", "currency": c} for c in ("EUR", "USD")]
    if attribute_type == "pim_catalog_metric":
        return {"amount": f"{n / 10:.4f}", "unit": "KILOGRAM", "symbol": "kg"}
    if attribute_type == "pim_catalog_image":
        return f"{n % 10}/{n % 7}/{n % 5}/{n:x}_picture.jpg"
    if attribute_type == "akeneo_reference_entity":
        return f"brand_{n % 50}"
    return [{"ingredient": f"ingredient_{n % 9}", "quantity": n % 5}]  # table


def make_product(index: int, rnd: random.Random) -> dict[str, Any]:
    """A realistic product: 60 attributes; a third localizable, a sixth scopable, a sixth both."""
    values: dict[str, list[dict[str, Any]]] = {}
    for a in range(60):
        attribute_type = TYPES[a % len(TYPES)]
        localizable = a % 3 == 1 or a % 6 == 5
        scopable = a % 6 in (2, 5)
        locales: list[str | None] = list(LOCALES) if localizable else [None]
        scopes: list[str | None] = list(CHANNELS) if scopable else [None]
        values[f"attr_{a}"] = [
            {
                "locale": loc,
                "scope": sc,
                "data": _data(attribute_type, rnd),
                "attribute_type": attribute_type,
            }
            for loc in locales
            for sc in scopes
        ]
    values["sku"] = [
        {
            "locale": None,
            "scope": None,
            "data": f"SKU-{index}",
            "attribute_type": "pim_catalog_identifier",
        }
    ]
    return {
        "uuid": f"00000000-0000-4000-8000-{index:012d}",
        "enabled": True,
        "family": "clothing",
        "categories": [f"cat_{(index + i) % 40}" for i in range(4)],
        "groups": [],
        "parent": f"model_{index % 100}",
        "values": values,
        "associations": {
            "X_SELL": {
                "products": [f"p{index + i}" for i in range(3)],
                "product_models": [],
                "groups": [],
            }
        },
        "quantified_associations": {},
        "created": "2024-01-01T00:00:00+00:00",
        "updated": "2024-01-02T00:00:00+00:00",
    }


def mutate(product: dict[str, Any], rnd: random.Random, share: float = 0.05) -> dict[str, Any]:
    """Change `share` of the product's values (at least one)."""
    out = copy.deepcopy(product)
    slots = [(attr, i) for attr, items in out["values"].items() for i in range(len(items))]
    for attr, i in rnd.sample(slots, max(1, round(len(slots) * share))):
        item = out["values"][attr][i]
        item["data"] = _data(item["attribute_type"], rnd)
    out["updated"] = "2024-01-03T00:00:00+00:00"
    return out


def _rate(fn: Any, pairs: list[Any], min_seconds: float) -> tuple[float, int]:
    gc.collect()
    done = 0
    start = time.perf_counter()
    while True:
        for pair in pairs:
            fn(pair)
        done += len(pairs)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed, done


def _hot_rate(
    indexed: list[tuple[dict[str, Any], dict[str, Any]]],
    raw_pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    min_seconds: float,
) -> tuple[float, int]:
    # What the mutator does per snapshot: load the stored state from the table's bytes and
    # index the new payload (not timed here), then diff the two while they are in the CPU
    # cache. Only the diff call is timed.
    stored_bytes = [orjson.dumps(a) for a, _ in indexed]
    gc.collect()
    spent = 0.0
    done = 0
    clock = time.perf_counter
    while spent < min_seconds:
        for i, (_, new_payload) in enumerate(raw_pairs):
            previous = orjson.loads(stored_bytes[i])
            current = index_state("product", new_payload)
            start = clock()
            diff(previous, current)
            spent += clock() - start
        done += len(raw_pairs)
    return done / spent, done


def run(
    n_products: int = 200, n_deepdiff: int = 30, min_seconds: float = 2.0, seed: int = 7
) -> dict[str, Any]:
    """Measure diffs/s of the engine and of DeepDiff on the same pairs, in one process.

    `diff_per_s` is the diff engine: `diff` of the stored indexed state (as read back from
    the table's JSON) against the indexed new state, cycling through all pairs back to back
    (200 pairs hold ~14 MB, so states come from main memory); `diff_hot_per_s` times the diff
    right after the states were loaded/built, as in the mutator. `index_and_diff_per_s` adds
    indexing the new payload: what the mutator does per snapshot to find the changes, besides
    decoding the message and the stored state.

    Returns:
        Figures: slots and changes per pair, mean stored state size (JSON bytes), diffs/s for
        the indexed diff, for index-new-payload + diff, for index-new-payload + decide (the
        whole decision), and for DeepDiff (ignore_order=True, which is what
        order-insensitive code lists need), plus ratios.
    """
    rnd = random.Random(seed)
    raw_pairs = []
    for i in range(n_products):
        before = make_product(i, rnd)
        raw_pairs.append((before, mutate(before, rnd)))
    # The stored state comes out of the Faust table as JSON, so round-trip it like the table.
    indexed = [
        (orjson.loads(orjson.dumps(index_state("product", a))), index_state("product", b))
        for a, b in raw_pairs
    ]
    changes_per_pair = sum(len(diff(a, b)) for a, b in indexed) / len(indexed)
    slots = sum(len(b["c"]) for _, b in indexed) / len(indexed)

    diff_rate, diff_n = _rate(lambda p: diff(p[0], p[1]), indexed, min_seconds)
    stored = [a for a, _ in indexed]
    decide_pairs = [(stored[i], raw_pairs[i][1]) for i in range(len(raw_pairs))]
    index_diff_rate, _ = _rate(
        lambda p: diff(p[0], index_state("product", p[1])), decide_pairs, min_seconds
    )
    decide_rate, _ = _rate(
        lambda p: decide("product", "product:x", p[0], p[1], None), decide_pairs, min_seconds
    )
    hot_rate, hot_n = _hot_rate(indexed, raw_pairs, min_seconds)
    dd_pairs = raw_pairs[:n_deepdiff]
    dd_rate, dd_n = _rate(lambda p: DeepDiff(p[0], p[1], ignore_order=True), dd_pairs, 0.5)
    dd_ordered_rate, _ = _rate(lambda p: DeepDiff(p[0], p[1]), dd_pairs, 0.5)
    return {
        "python": sys.version.split()[0],
        "pairs": len(indexed),
        "values_per_product": sum(len(v) for v in raw_pairs[0][0]["values"].values()),
        "slots_per_state": round(slots, 1),
        "changes_per_pair": round(changes_per_pair, 1),
        "state_bytes": round(sum(len(orjson.dumps(a)) for a in stored) / len(stored)),
        "diff_per_s": round(diff_rate),
        "diff_runs": diff_n,
        "diff_hot_per_s": round(hot_rate),
        "diff_hot_runs": hot_n,
        "index_and_diff_per_s": round(index_diff_rate),
        "index_and_decide_per_s": round(decide_rate),
        "deepdiff_ignore_order_per_s": round(dd_rate, 1),
        "deepdiff_ignore_order_runs": dd_n,
        "deepdiff_ordered_per_s": round(dd_ordered_rate, 1),
        "ratio_diff_vs_deepdiff": round(diff_rate / dd_rate),
        "ratio_diff_hot_vs_deepdiff": round(hot_rate / dd_rate),
        "ratio_index_and_diff_vs_deepdiff": round(index_diff_rate / dd_rate),
        "ratio_index_and_decide_vs_deepdiff": round(decide_rate / dd_rate),
        "ratio_diff_vs_deepdiff_ordered": round(diff_rate / dd_ordered_rate),
    }


def main() -> None:
    """Print the figures."""
    result = run()
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
