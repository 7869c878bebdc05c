"""`python -m bench --only ...` rewrites only the sections it ran."""

from __future__ import annotations

from typing import Any

from bench.__main__ import merge_sections, render

Section = tuple[str, str, str, dict[str, Any] | str, float]

SYNC: Section = ("bench.bench_sync", "Full REST sync into pim.snapshots", "t", {"rate": 5}, 1.0)


def rerun_diff(sections: list[Section], diff_per_s: int) -> str:
    """The document of a full run of `sections` (rendered once), after which a partial run of
    the diff benchmark alone, measuring `diff_per_s`, merged its section in."""
    full = render(sections, "make bench", "2026-01-01 00:00", "aaaaaaa", "machine A")
    return merge_sections(
        full,
        [("bench.bench_diff", "Diff engine vs DeepDiff", "t", {"diff_per_s": diff_per_s}, 2.0)],
        "python -m bench --only bench.bench_diff",
        "2026-02-02 00:00",
        "bbbbbbb",
        "machine B",
    )


def test_a_partial_run_replaces_its_sections_and_keeps_the_others() -> None:
    merged = rerun_diff(
        [
            (
                "bench.reference",
                "Reference workload (the unit of CPU figures across hosts)",
                "t",
                {"reference_cpu_s": 0.2},
                1.0,
            ),
            ("bench.bench_diff", "Diff engine vs DeepDiff", "t", {"diff_per_s": 100}, 1.0),
            SYNC,
        ],
        999,
    )
    assert "| diff_per_s | 999 |" in merged
    assert "| diff_per_s | 100 |" not in merged
    assert "| rate | 5 |" in merged and "| reference_cpu_s | 0.200 |" in merged
    assert (
        "Run: `python -m bench --only bench.bench_diff`, 2026-02-02 00:00 UTC, commit bbbbbbb"
        in merged
    )
    # The head still describes the full run, and the order is the benchmarks' order.
    assert "commit aaaaaaa" in merged.split("## ", 1)[0]
    assert merged.index("## Reference") < merged.index("## Diff") < merged.index("## Full REST")


def test_a_new_section_is_added_in_the_benchmarks_order() -> None:
    merged = rerun_diff([SYNC], 1)
    assert merged.index("## Diff") < merged.index("## Full REST")
