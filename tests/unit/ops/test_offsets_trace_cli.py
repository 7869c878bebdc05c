"""Pure parts of `hub offsets`, `hub trace` and the option parsing of the operator commands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from pim_hub.cli.ops import parse_when
from pim_hub.ops.offsets import GroupView, PartitionLag, ResetTarget, plan_offsets
from pim_hub.ops.trace import Trace, TraceEvent, describe_change, looks_like_key, render
from pim_hub.runtime.logread import OffsetsError

PARTS = [
    PartitionLag("t", 0, committed=5, start=2, end=10),
    PartitionLag("t", 1, committed=None, start=0, end=4),
]


def test_lag_counts_from_the_committed_offset_or_the_log_start() -> None:
    assert [p.lag for p in PARTS] == [5, 4]
    assert GroupView("g", "EMPTY", 0, list(PARTS)).total_lag == 9


@pytest.mark.parametrize(
    ("state", "members", "active"),
    [
        ("STABLE", 0, True),  # Tansu: stable, but no member list
        ("PREPARING_REBALANCE", 0, True),
        ("COMPLETING_REBALANCE", 0, True),
        ("EMPTY", 0, False),
        ("DEAD", 0, False),
        ("UNKNOWN", 2, True),
    ],
)
def test_group_activity_from_state_or_members(state: str, members: int, active: bool) -> None:
    assert GroupView("g", state, members).active is active


def test_reset_plans_earliest_latest_and_clamped_offsets() -> None:
    assert [r.new for r in plan_offsets(PARTS, ResetTarget("earliest"))] == [2, 0]
    assert [r.new for r in plan_offsets(PARTS, ResetTarget("latest"))] == [10, 4]
    rows = plan_offsets(PARTS, ResetTarget("offset", offset=7))
    assert [(r.new, bool(r.note)) for r in rows] == [(7, False), (4, True)]
    assert rows[0].change == 2 and rows[1].change is None


def test_shift_by_moves_from_the_committed_offset_inside_the_log() -> None:
    rows = plan_offsets(PARTS, ResetTarget("shift", offset=-4))
    # 5 - 4 = 1 is before the log start 2; nothing committed on partition 1: from its start.
    assert [(r.new, bool(r.note)) for r in rows] == [(2, True), (0, True)]
    assert [r.new for r in plan_offsets(PARTS, ResetTarget("shift", offset=3))] == [8, 3]
    assert ResetTarget("shift", offset=-4).describe() == "committed offset -4"


def test_reset_to_a_time_uses_the_looked_up_offsets() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    rows = plan_offsets(PARTS, ResetTarget("datetime", when=when), {("t", 0): 3, ("t", 1): 4})
    assert [r.new for r in rows] == [3, 4]
    assert "2026-01-01" in ResetTarget("datetime", when=when).describe()
    with pytest.raises(OffsetsError):
        plan_offsets(PARTS, ResetTarget("datetime", when=when), {})


def test_parse_when_takes_iso_times_and_ages() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_when("90m", now) == datetime(2026, 1, 2, 10, 30, tzinfo=UTC)
    assert parse_when("1d", now) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_when("2026-01-01T08:00:00") == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert parse_when("2026-01-01T08:00:00+02:00").utcoffset() is not None
    with pytest.raises(typer.BadParameter):
        parse_when("yesterday")


def test_entity_keys_are_recognised() -> None:
    assert looks_like_key("product:0d4e")
    assert not looks_like_key("SKU-1")
    assert not looks_like_key("unknown:x")
    assert not looks_like_key("product:")


def test_changes_are_described_compactly() -> None:
    change = {"field": "values", "attribute": "name", "locale": "en_US", "scope": None}
    assert describe_change({**change, "old": "A", "new": "B"}) == 'values.name[en_US]: "A" → "B"'
    cats = {"field": "categories", "attribute": None, "added": ["x"], "removed": []}
    assert describe_change(cats) == "categories: +['x'] -[]"


def test_render_orders_stages_and_shows_errors() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        TraceEvent(at, "status", "s", 0, 1, "dead abc → x (attempt 1): http_400: bad"),
        TraceEvent(at, "mutation", "m", 0, 0, "create", {"changes": []}),
    ]
    trace = Trace("product:1", ["product:1"], sorted(events, key=TraceEvent.sort_key))
    lines = render(trace)
    assert lines[0] == "trace of product:1"
    assert "mutation" in lines[1] and "http_400: bad" in lines[2]
    assert trace.as_json()["timeline"][0]["at"] == at.isoformat()
