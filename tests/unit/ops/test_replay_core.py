"""Pure parts of replay and resync: job ids, filters, offset ranges, pacing, targets, folding."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from pim_hub.ops.replay import (
    EntityFilter,
    Pacer,
    ReplayError,
    RunReport,
    choose_targets,
    key_matches,
    parse_offsets,
    plan_ranges,
    rerun_job_id,
)
from pim_hub.ops.resync import EntityState, full_state_mutation, latest_states
from pim_hub.registry.model import IntegrationTarget
from pim_hub.services.mutator.core.fanout import job_id

ALL = frozenset({"product", "category"})


def test_replay_job_ids_differ_from_live_ids_and_between_runs_but_repeat_within_a_run() -> None:
    live = job_id("m1", "shop")
    first = rerun_job_id("m1", "shop", "run-a")
    assert first != live
    assert first != rerun_job_id("m1", "shop", "run-b")
    assert first != rerun_job_id("m1", "erp", "run-a")
    assert first == rerun_job_id("m1", "shop", "run-a")


@pytest.mark.parametrize(
    ("key", "pattern", "expected"),
    [
        ("product:abc", None, True),
        ("product:abc", "product:*", True),
        ("category:abc", "product:*", False),
        ("category:shoes", "shoe*", True),
        ("product:shoes", "*:shoes", True),
        ("product:boots", "shoe*", False),
        ("product:Shoes", "product:shoes", False),
    ],
)
def test_key_glob(key: str, pattern: str | None, expected: bool) -> None:
    assert key_matches(key, pattern) is expected


def test_entity_filter_checks_type_and_pattern() -> None:
    flt = EntityFilter(frozenset({"category"}), "c-*")
    assert flt.matches("category:c-1")
    assert not flt.matches("product:c-1")
    assert not flt.matches("category:d-1")


def test_parse_offsets_for_every_partition_or_one() -> None:
    assert parse_offsets(["5"], [0, 1, 2], "--from-offset") == {0: 5, 1: 5, 2: 5}
    assert parse_offsets(["5", "1:9"], [0, 1], "--from-offset") == {0: 5, 1: 9}


@pytest.mark.parametrize("value", ["x", "7:1", "1:y", "-3"])
def test_parse_offsets_refuses_bad_values(value: str) -> None:
    with pytest.raises(ReplayError):
        parse_offsets([value], [0, 1], "--to-offset")


def test_plan_ranges_stays_in_the_log_and_honours_every_bound() -> None:
    bounds = {("t", 0): (2, 10), ("t", 1): (0, 4), ("t", 2): (0, 0)}
    ranges = plan_ranges(bounds, {0: 0, 1: 3}, {0: 8}, {("t", 0): 5, ("t", 1): 0})
    assert ranges == {("t", 0): (5, 8), ("t", 1): (3, 4), ("t", 2): (0, 0)}
    # a start past the stop makes an empty range, never a negative one
    assert plan_ranges({("t", 0): (0, 10)}, {0: 9}, {0: 4}) == {("t", 0): (4, 4)}


def test_pacer_spaces_calls_without_saving_idle_time() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))
        now[0] += s

    pacer = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    assert slept == [0.25, 0.25]
    now[0] += 10  # idle: the next call goes at once, no burst afterwards
    pacer.wait()
    pacer.wait()
    assert slept == [0.25, 0.25, 0.25]
    Pacer(0).wait()  # no limit: returns at once


def _target(iid: str, enabled: bool = True) -> IntegrationTarget:
    return IntegrationTarget(iid, "webhook", enabled, ALL)


def test_choose_targets_defaults_to_enabled_and_refuses_unknown_or_disabled() -> None:
    targets = [_target("a"), _target("b", enabled=False), _target("c")]
    assert [t.integration_id for t in choose_targets(targets, [])] == ["a", "c"]
    assert [t.integration_id for t in choose_targets(targets, ["c", "c"])] == ["c"]
    with pytest.raises(ReplayError, match="unknown integration"):
        choose_targets(targets, ["zz"])
    with pytest.raises(ReplayError, match="disabled"):
        choose_targets(targets, ["b"])


def test_report_counts_per_integration_and_priority() -> None:
    report = RunReport("r1", "replay-guarded", dry_run=True, read=3, matched=2)
    report.jobs[("a", "normal")] += 2
    report.jobs[("b", "low")] += 1
    assert report.total_jobs == 3
    text = "\n".join(report.lines())
    assert "would publish 3 job(s) (dry run)" in text
    assert report.as_json()["jobs"] == [
        {"integration": "a", "priority": "normal", "jobs": 2},
        {"integration": "b", "priority": "low", "jobs": 1},
    ]


def _mutation(key: str, op: str, version: str, name: str | None) -> dict[str, object]:
    state = None if name is None else orjson.dumps({"code": key.split(":")[1], "name": name})
    return {
        "entity_type": "category",
        "entity_key": key,
        "operation": op,
        "version": version,
        "state": state.decode() if state else None,
    }


def test_latest_states_keeps_the_last_state_drops_deleted_and_ignores_older_versions() -> None:
    folded = latest_states(
        [
            _mutation("category:a", "create", "2026-01-01T10:00:00+00:00", "A1"),
            _mutation("category:b", "create", "2026-01-01T10:00:00+00:00", "B1"),
            _mutation("category:a", "update", "2026-01-01T11:00:00+00:00", "A2"),
            _mutation("category:a", "update", "2026-01-01T09:00:00+00:00", "old"),
            _mutation("category:b", "delete", "2026-01-01T12:00:00+00:00", "B1"),
        ]
    )
    assert folded["category:b"] is None
    a = folded["category:a"]
    assert a is not None and a.state["name"] == "A2" and a.version == "2026-01-01T11:00:00+00:00"


def test_full_state_mutation_is_a_create_with_every_field() -> None:
    state = {
        "code": "shoes",
        "parent": "master",
        "labels": {"en_US": "Shoes", "fr_FR": "Chaussures"},
        "updated": "2026-01-01T10:00:00+00:00",
    }
    now = datetime(2026, 2, 1, tzinfo=UTC)
    entity = EntityState("category", "category:shoes", state, "2026-01-01T10:00:00+00:00")
    m = full_state_mutation(entity, "run1", now)
    assert m["operation"] == "create" and m["origin"] == "resync"
    slots = {(c["field"], c["attribute"], c["locale"]) for c in m["changes"]}
    assert {("parent", None, None), ("labels", None, "en_US"), ("labels", None, "fr_FR")} <= slots
    assert orjson.loads(m["state"])["labels"]["fr_FR"] == "Chaussures"
    assert m["mutation_id"] == full_state_mutation(entity, "run2", now)["mutation_id"]


def test_a_dry_run_reads_the_fields_planning_needs_and_counts_what_a_run_would_publish() -> None:
    import json

    from pim_hub.ops.replay import _planning_fields
    from pim_hub.registry.priority import PriorityRules
    from pim_hub.schemas.serde import Serde, current
    from pim_hub.services.mutator.core import diffing
    from pim_hub.services.mutator.processing import FanOut

    # The head read by a dry run is the schema's first fields, in this order.
    names = [f["name"] for f in current("Mutation").raw["fields"]]
    assert names[:5] == ["mutation_id", "entity_type", "entity_key", "operation", "changes"]
    serde = Serde()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    price = [{"amount": "10.00", "currency": "EUR"}]

    def product(**over: object) -> dict[str, object]:
        name = over.pop("name", "Tee")
        values = {
            "price": [{"locale": None, "scope": None, "data": price}],
            "name": [{"locale": None, "scope": None, "data": name}],
        }
        return {"uuid": "u-1", "enabled": True, "values": values, **over}

    records, stored = [], None
    for payload, version in (
        (product(), "2026-01-01T00:00:00+00:00"),  # create: every value is a change
        (product(name="Shirt"), "2026-01-02T00:00:00+00:00"),  # update of a value
        (None, "2026-01-03T00:00:00+00:00"),  # delete
    ):
        d = diffing.decide("product", "product:u-1", stored, payload, version)
        stored = d.new_state
        records.append(
            {
                "mutation_id": d.mutation_id,
                "entity_type": "product",
                "entity_key": "product:u-1",
                "operation": d.operation,
                "changes": [diffing.change_to_record(c) for c in d.changes],
                "state": json.dumps(d.state_payload),
                "version": version,
                "causation_id": "e",
                "source_received_at": now,
                "created_at": now,
            }
        )
    # Names are urgent for one integration: the update's changes decide its priority.
    targets = [
        IntegrationTarget(
            "shop", "webhook", True, None, priority_map={"attributes": {"name": "immediate"}}
        ),
        IntegrationTarget("erp", "webhook", True, None),
    ]
    fanout = FanOut(serde, rules=PriorityRules())
    for record in records:
        value = serde.encode("Mutation", record)
        head = _planning_fields(serde, value)
        assert "state" not in head
        assert head["entity_key"] == "product:u-1" and head["operation"] == record["operation"]
        if record["operation"] == "create":
            assert head["changes"] == []  # not read: a creation's priority ignores them
        else:
            assert head["changes"] == record["changes"]
        full = serde.decode("Mutation", value)
        published = sorted((j["integration_id"], p) for p, _k, j in fanout.jobs_for(full, targets))
        assert sorted(fanout.priorities_for(head, targets)) == published
    assert dict(
        fanout.priorities_for(
            _planning_fields(serde, serde.encode("Mutation", records[1])), targets
        )
    ) == {
        "erp": "normal",
        "shop": "immediate",
    }
