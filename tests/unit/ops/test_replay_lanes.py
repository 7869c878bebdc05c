"""Replays and resyncs stay off the live lanes: `--priority` parsing, the plan and its report."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from pim_hub.cli import ops as cli_ops
from pim_hub.cli.main import app
from pim_hub.ops import replay as replay_ops
from pim_hub.ops import resync as resync_ops
from pim_hub.ops.dispatchers import BULK_PRIORITY, needed_dispatchers
from pim_hub.ops.replay import (
    KEEP_PRIORITY,
    ReplayError,
    ReplayOptions,
    RunReport,
    resolve_priority,
)
from pim_hub.registry.model import Integration, IntegrationTarget
from pim_hub.registry.queue_map import parse_queue_map
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.processing import fanout_for

QMAP = parse_queue_map(None)
#: A queue map of its own names: no `low`.
CUSTOM = parse_queue_map(
    {
        "priorities": {
            "urgent": {"level": 0, "topic": "jobs.urgent"},
            "later": {"level": 5, "topic": "jobs.later"},
        },
        "default": "later",
        "entity_types": {},
        "operations": {"delete": "urgent"},
        "fields": {},
        "attributes": {"price": "urgent"},
        "price_collections": "urgent",
    }
)
PRICE = {
    "field": "values",
    "attribute": "price",
    "locale": None,
    "scope": None,
    "old": None,
    "new": orjson.dumps([{"amount": "1.00", "currency": "EUR"}]).decode(),
}
NAME = {"field": "values", "attribute": "name", "locale": None, "scope": None, "old": None}


def _mutation(changes: list[dict[str, Any]], operation: str = "update") -> dict[str, Any]:
    return {
        "mutation_id": "m-1",
        "entity_type": "product",
        "entity_key": "product:p1",
        "operation": operation,
        "changes": changes,
        "state": "{}",
        "version": "2026-01-01T10:00:00+00:00",
    }


def _target(iid: str) -> IntegrationTarget:
    return IntegrationTarget(
        integration_id=iid,
        driver="webhook",
        enabled=True,
        supported_entity_types=frozenset({"product"}),
    )


def test_the_default_is_low_keep_is_fan_outs_and_a_named_level_is_taken() -> None:
    assert ReplayOptions().priority == BULK_PRIORITY == "low"
    assert cli_ops.BULK_PRIORITY == BULK_PRIORITY, "the CLI's default names the same lane"
    assert resolve_priority("low", QMAP.levels) == "low"
    assert resolve_priority(KEEP_PRIORITY, QMAP.levels) is None
    assert resolve_priority("normal", QMAP.levels) == "normal"


def test_an_unknown_priority_names_the_levels_and_keep() -> None:
    with pytest.raises(ReplayError) as err:
        resolve_priority("urgent", QMAP.levels)
    assert str(err.value) == (
        "--priority 'urgent': not a priority of the queue map; use keep or immediate, normal, low"
    )
    # Names are case-sensitive, as in the queue map.
    with pytest.raises(ReplayError, match="not a priority"):
        resolve_priority("LOW", QMAP.levels)


def test_a_queue_map_without_low_says_so_for_the_default() -> None:
    with pytest.raises(ReplayError) as err:
        resolve_priority("low", CUSTOM.levels)
    message = str(err.value)
    assert "has no priority 'low'" in message and "HUB_QUEUE_MAP_FILE" in message
    assert "urgent, later, or keep" in message
    assert resolve_priority("later", CUSTOM.levels) == "later"


def test_jobs_fan_out_puts_on_immediate_go_to_low_and_say_so_in_their_record() -> None:
    fanout = fanout_for(QMAP, Serde())
    report = RunReport("r1", "replay-guarded", dry_run=False, lane="low")
    [(given, _key, job)] = fanout.jobs_for(_mutation([PRICE]), [_target("shop")])
    assert given == "immediate"  # a price change: live, this is the immediate lane
    lane = report.route(given, job)
    assert lane == job["priority"] == "low"
    assert QMAP.topic(lane) == "hub.jobs.low"
    assert report.fanout == {"immediate": 1}


def test_keep_leaves_fan_outs_priority() -> None:
    fanout = fanout_for(QMAP, Serde())
    report = RunReport("r1", "replay-guarded", dry_run=False, lane=None)
    [(given, _key, job)] = fanout.jobs_for(_mutation([PRICE]), [_target("shop")])
    assert report.route(given, job) == job["priority"] == "immediate"


def test_a_dry_run_plan_counts_jobs_on_the_lane_with_fan_outs_priorities_beside() -> None:
    fanout = fanout_for(QMAP, Serde())
    report = RunReport("r1", "resync", dry_run=True, read=3, matched=3, lane="low")
    report.plan(fanout.priorities_for(_mutation([PRICE]), [_target("a"), _target("b")]))
    report.plan(fanout.priorities_for(_mutation([{**NAME, "new": '"x"'}]), [_target("a")]))
    assert report.jobs == {("a", "low"): 2, ("b", "low"): 1}
    lines = report.lines()
    assert lines[1] == "  priority: low for every job (fan-out would give immediate 2, normal 1)"
    assert lines[-1] == "would publish 3 job(s) on low (dry run)"
    shown = report.as_json()
    assert shown["priority"] == "low"
    assert shown["fanout_priorities"] == {"immediate": 2, "normal": 1}
    assert shown["jobs"] == [
        {"integration": "a", "priority": "low", "jobs": 2},
        {"integration": "b", "priority": "low", "jobs": 1},
    ]

    kept = RunReport("r2", "resync", dry_run=True, lane=None)
    kept.plan(fanout.priorities_for(_mutation([PRICE]), [_target("a")]))
    assert kept.jobs == {("a", "immediate"): 1}
    assert kept.lines()[1] == "  priority: as fan-out gives (--priority keep)"
    assert kept.lines()[-1] == "would publish 1 job(s) (dry run)"
    assert kept.as_json()["priority"] == "keep"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Settings that pass the CLI's checks; nothing listens there (nothing must be reached)."""
    env = {
        "HUB_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "HUB_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    monkeypatch.delenv("HUB_QUEUE_MAP_FILE", raising=False)
    return env


def test_hub_replay_passes_the_priority_default_low(
    monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]
) -> None:
    seen: list[ReplayOptions] = []

    def fake(_settings: Any, options: ReplayOptions, _progress: Any = None) -> RunReport:
        seen.append(options)
        return RunReport("r1", "replay-guarded", options.dry_run, lane="low")

    monkeypatch.setattr(replay_ops, "replay", fake)
    runner = CliRunner()
    args = ["replay", "--since", "1h", "--dry-run", "--no-progress"]
    first = runner.invoke(app, args, env=cli_env)
    assert first.exit_code == 0, first.output
    kept = runner.invoke(app, [*args, "--priority", "keep"], env=cli_env)
    assert kept.exit_code == 0, kept.output
    assert [o.priority for o in seen] == ["low", "keep"]
    assert "priority: low for every job" in first.stdout


@pytest.mark.parametrize("command", ["replay", "resync"])
def test_an_unknown_priority_exits_2_before_any_broker_or_database(
    command: str, cli_env: dict[str, str]
) -> None:
    args = ["--since", "1h"] if command == "replay" else ["--integration", "shop"]
    result = CliRunner().invoke(
        app, [command, *args, "--priority", "urgent", "--no-progress"], env=cli_env
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "error: --priority 'urgent': not a priority of the queue map;"
        " use keep or immediate, normal, low"
    )


def test_hub_resync_passes_the_priority(
    monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]
) -> None:
    seen: list[str] = []

    def fake(*_args: Any, priority: str = "?", dry_run: bool = False, **_kw: Any) -> RunReport:
        seen.append(priority)
        return RunReport("r1", "resync", dry_run, lane=None if priority == "keep" else priority)

    monkeypatch.setattr(resync_ops, "resync", fake)
    runner = CliRunner()
    for extra in ([], ["--priority", "normal"]):
        out = runner.invoke(
            app, ["resync", "-i", "shop", "--dry-run", "--no-progress", *extra], env=cli_env
        )
        assert out.exit_code == 0, out.output
    assert seen == ["low", "normal"]


def _integ(iid: str, types: list[str] | None) -> Integration:
    return Integration(iid, iid, "webhook", True, {}, types, {})


def test_every_integration_needs_a_low_dispatcher_for_replays() -> None:
    # Products alone never reach `low` live; a replay or resync of them does by default.
    needs = needed_dispatchers([_integ("p", ["product"])], QMAP)
    assert [(n.priority, n.integrations) for n in needs] == [
        ("immediate", ("p",)),
        ("normal", ("p",)),
        ("low", ("p",)),
    ]
    # A queue map without `low`: nothing to add (a replay there must name its lane).
    assert "low" not in {n.priority for n in needed_dispatchers([_integ("p", None)], CUSTOM)}
