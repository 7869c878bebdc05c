"""`hub replay` and `hub resync` publish on the low lane by default, off the live lanes.

A product is created (fan-out: `normal`) and its price changed (fan-out: `immediate`) through
the running pipeline; a forced replay of both is then read back from the job topics: on
`hub.jobs.low` by default (and delivered by the low dispatcher), on fan-out's own lanes with
`--priority keep`. An unknown priority stops the command with exit 2 before anything is sent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.ops.replay import rerun_job_id
from pim_hub.registry.store import set_enabled
from pim_hub.runtime.kafka import produce_sync
from pim_hub.runtime.logread import ephemeral_consumer, log_bounds, partitions_of, scan
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from tests.integration.test_replay_ops import (
    REFRESH_S,
    Feed,
    add_webhook,
    bodies,
    product,
    version,
    wait_bodies,
)

pytestmark = pytest.mark.integration


def with_price(feed: Feed, i: int, amount: str, at: str) -> None:
    """Publish product i with a price (a price change is an `immediate` job live)."""
    payload = product(feed.uuid(i), "priced", at)
    payload["values"]["price"] = [
        {"locale": None, "scope": None, "data": [{"amount": amount, "currency": "EUR"}]}
    ]
    record = snapshot_record("product", feed.key(i), payload, at, "external")
    produce_sync(
        feed.producer, topics.SNAPSHOTS, feed.serde.encode("Snapshot", record), key=feed.key(i)
    )


def lanes_of(settings: Settings, job_ids: set[str]) -> dict[str, str]:
    """job id -> the priority whose topic holds it (and the record's `priority`, checked equal)."""
    serde = Serde(settings.registry_config())
    consumer = ephemeral_consumer(settings, "test-lanes")
    found: dict[str, str] = {}
    try:
        for priority in topics.PRIORITIES:
            topic = topics.job_topic(priority)
            bounds = log_bounds(consumer, [(topic, p) for p in partitions_of(consumer, topic)])
            for msg in scan(consumer, bounds):
                job = serde.decode("Job", msg.value(), topic=topic)
                if job["job_id"] in job_ids:
                    assert job["priority"] == priority, "the record names the topic's priority"
                    assert job["job_id"] not in found, "each job is published once"
                    found[job["job_id"]] = priority
    finally:
        consumer.close()
    return found


def test_replay_and_resync_go_to_low_unless_asked_and_refuse_an_unknown_priority(
    pipeline: Supervisor,
    hub_settings: Settings,
    hub_env: dict[str, str],
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    a = f"rlane-{unique}"
    add_webhook(database_url, a, f"{http_sink.url}/{a}")
    time.sleep(REFRESH_S)
    feed = Feed(hub_settings, unique)
    key = feed.key(1)
    since = datetime.now(UTC)
    with_price(feed, 1, "10.00", version(10))  # created: normal
    with_price(feed, 1, "12.00", version(11))  # its price changed: immediate
    live = wait_bodies(http_sink, a, 2, pipeline, key)
    until = datetime.now(UTC)
    created, repriced = (
        next(b for b in live if b["operation"] == op) for op in ("create", "update")
    )
    window = [
        *("--since", since.isoformat(), "--until", until.isoformat()),
        *("-i", a, "--key", key, "--mode", "force", "--no-progress"),
    ]
    runner = CliRunner()

    dry = runner.invoke(app, ["replay", *window, "--dry-run"], env=hub_env)
    assert dry.exit_code == 0, dry.output
    assert "priority: low for every job (fan-out would give immediate 1, normal 1)" in dry.stdout
    assert "would publish 2 job(s) on low (dry run)" in dry.stdout

    def run(run_id: str, *extra: str) -> dict[str, str]:
        out = runner.invoke(app, ["replay", *window, "--run-id", run_id, *extra], env=hub_env)
        assert out.exit_code == 0, out.output
        ids = {
            rerun_job_id(created["mutation_id"], a, run_id): "create",
            rerun_job_id(repriced["mutation_id"], a, run_id): "update",
        }
        found = lanes_of(hub_settings, set(ids))
        return {ids[job_id]: priority for job_id, priority in found.items()}

    assert run(f"low-{unique}") == {"create": "low", "update": "low"}
    # The low dispatcher delivers them (a forced replay sends what the target already has).
    replayed = wait_for(
        lambda: [b for b in bodies(http_sink, a, key) if b["mode"] == "replay-force"],
        timeout=60,
        what="the replayed jobs delivered from the low lane",
        supervisor=pipeline,
    )
    assert {b["operation"] for b in replayed} <= {"create", "update"}

    assert run(f"keep-{unique}", "--priority", "keep") == {
        "create": "normal",
        "update": "immediate",
    }
    assert run(f"named-{unique}", "--priority", "normal") == {
        "create": "normal",
        "update": "normal",
    }

    bad = runner.invoke(app, ["replay", *window, "--priority", "urgent"], env=hub_env)
    assert bad.exit_code == 2, bad.output
    assert "--priority 'urgent': not a priority of the queue map" in bad.stderr
    assert "published" not in bad.stdout

    # A resync is a creation of the full state: low, not the product's live lane (normal).
    resynced = runner.invoke(
        app,
        ["resync", "-i", a, "--key", key, "--source", "log", "--json", "--run-id", f"rs-{unique}"],
        env=hub_env,
    )
    assert resynced.exit_code == 0, resynced.output
    report: dict[str, Any] = orjson.loads(resynced.stdout)
    assert report["priority"] == "low" and report["total_jobs"] == 1
    assert report["jobs"] == [{"integration": a, "priority": "low", "jobs": 1}]
    bad = runner.invoke(app, ["resync", "-i", a, "--priority", "urgent"], env=hub_env)
    assert bad.exit_code == 2 and "not a priority of the queue map" in bad.stderr
    set_enabled(database_url, a, False)
