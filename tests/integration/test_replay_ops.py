"""`hub replay` and `hub resync` through the running pipeline (webhook dispatchers → http_sink)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import query, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.drivers.discovery import discover
from pim_hub.ops.replay import EntityFilter, ReplayOptions, replay, rerun_job_id
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.registry.store import set_enabled
from pim_hub.runtime.kafka import make_producer, produce_sync
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from tests.integration.waits import wait_at_least

pytestmark = pytest.mark.integration

#: Fan-out and dispatchers reload the registry every second (HUB_INTEGRATIONS_REFRESH_S=1).
REFRESH_S = 2.5


def product(uuid: str, name: str, updated: str) -> dict[str, Any]:
    """A small Akeneo product."""
    return {
        "uuid": uuid,
        "identifier": f"SKU-{uuid}",
        "enabled": True,
        "family": "shoes",
        "categories": ["men"],
        "groups": [],
        "parent": None,
        "values": {
            "sku": [{"locale": None, "scope": None, "data": f"SKU-{uuid}"}],
            "name": [{"locale": "en_US", "scope": None, "data": name}],
        },
        "associations": {},
        "updated": updated,
    }


def version(hour: int, minute: int = 0) -> str:
    """A source version on a fixed day."""
    return f"2026-01-01T{hour:02d}:{minute:02d}:00+00:00"


class Feed:
    """Publishes product snapshots of one test."""

    def __init__(self, settings: Settings, unique: str) -> None:
        self.producer = make_producer(settings)
        self.serde = Serde()
        self.unique = unique

    def uuid(self, i: int) -> str:
        return f"{self.unique[:8]}-0000-4000-8000-{i:012d}"

    def key(self, i: int) -> str:
        return f"product:{self.uuid(i)}"

    @property
    def pattern(self) -> str:
        return f"product:{self.unique[:8]}-*"

    def publish(self, i: int, name: str | None, at: str) -> None:
        key = self.key(i)
        payload = None if name is None else product(self.uuid(i), name, at)
        record = snapshot_record("product", key, payload, at, "external")
        produce_sync(
            self.producer, topics.SNAPSHOTS, self.serde.encode("Snapshot", record), key=key
        )


def add_webhook(database_url: str, iid: str, url: str) -> None:
    """Register an enabled webhook integration."""
    upsert_integration(
        database_url,
        discover(),
        Integration(iid, f"ops test {iid}", "webhook", True, {"url": url}, None, {}),
    )


def bodies(sink: HttpSink, iid: str, key: str | None = None) -> list[dict[str, Any]]:
    """What one integration received, in arrival order."""
    return [b for b in sink.bodies(key) if b.get("integration_id") == iid]


def wait_bodies(
    sink: HttpSink, iid: str, n: int, pipeline: Supervisor, key: str | None = None
) -> list[dict[str, Any]]:
    """At least n bodies of one integration."""
    return wait_at_least(
        lambda: bodies(sink, iid, key),
        n,
        timeout=60,
        what=f"{n} deliveries to {iid}",
        supervisor=pipeline,
    )


def statuses(database_url: str, job_ids: list[str]) -> dict[str, str]:
    """job id -> latest status in the deliveries projection."""
    rows = query(
        database_url, "SELECT job_id, status FROM deliveries WHERE job_id = ANY(%s)", job_ids
    )
    return {r["job_id"]: r["status"] for r in rows}


def wait_statuses(database_url: str, job_ids: list[str], pipeline: Supervisor) -> dict[str, str]:
    """Final statuses (delivered/skipped/dead) of every job."""

    def final() -> dict[str, str]:
        s = statuses(database_url, job_ids)
        done = len(s) == len(job_ids) and all(
            v in ("delivered", "skipped", "dead") for v in s.values()
        )
        return s if done else {}

    return wait_for(
        final,
        timeout=60,
        what=f"statuses of {len(job_ids)} jobs",
        supervisor=pipeline,
    )


def test_replay_of_a_time_window_reaches_only_the_chosen_integration(
    pipeline: Supervisor,
    hub_settings: Settings,
    hub_env: dict[str, str],
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    a, b = f"rpa-{unique}", f"rpb-{unique}"
    add_webhook(database_url, a, f"{http_sink.url}/{a}")
    add_webhook(database_url, b, f"{http_sink.url}/{b}")
    time.sleep(REFRESH_S)
    feed = Feed(hub_settings, unique)
    feed.publish(1, "before", version(10))
    wait_bodies(http_sink, a, 1, pipeline)
    since = datetime.now(UTC)
    feed.publish(2, "inside-2", version(10))
    feed.publish(3, "inside-3", version(10))
    wait_bodies(http_sink, a, 3, pipeline)
    wait_bodies(http_sink, b, 3, pipeline)
    until = datetime.now(UTC)
    feed.publish(4, "after", version(10))
    wait_bodies(http_sink, b, 4, pipeline)

    # Forced: a guarded replay would send nothing, the target already has these versions
    # (docs/delivery-semantics.md); this test is about which mutations and integrations.
    window = [
        *("--since", since.isoformat(), "--until", until.isoformat()),
        *("--key", feed.pattern, "--mode", "force"),
    ]
    dry = CliRunner().invoke(
        app, ["replay", "-i", a, *window, "--dry-run", "--no-progress"], env=hub_env
    )
    assert dry.exit_code == 0, dry.output
    assert "2 matched" in dry.output and "would publish 2 job(s)" in dry.output
    assert a in dry.output and b not in dry.output
    run = CliRunner().invoke(
        app, ["replay", "-i", a, *window, "--run-id", f"w-{unique}", "--no-progress"], env=hub_env
    )
    assert run.exit_code == 0, run.output
    assert "published 2 job(s)" in run.output

    replayed = wait_at_least(
        lambda: [x for x in bodies(http_sink, a) if x["mode"] != "live"],
        2,
        timeout=60,
        what="2 replayed deliveries",
        supervisor=pipeline,
    )
    assert sorted(x["entity_key"] for x in replayed) == [feed.key(2), feed.key(3)]
    assert {x["mode"] for x in replayed} == {"replay-force"}
    live_ids = {x["job_id"] for x in bodies(http_sink, a) if x["mode"] == "live"}
    assert not live_ids & {x["job_id"] for x in replayed}, "replay job ids are new"
    time.sleep(1.0)
    assert all(x["mode"] == "live" for x in bodies(http_sink, b)), "b was not chosen"
    assert len(bodies(http_sink, a)) == 6
    for iid in (a, b):
        set_enabled(database_url, iid, False)


def test_guarded_replay_skips_what_the_target_has_and_force_pushes_it_again(
    pipeline: Supervisor,
    hub_settings: Settings,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    a = f"rpg-{unique}"
    add_webhook(database_url, a, f"{http_sink.url}/{a}")
    time.sleep(REFRESH_S)
    feed = Feed(hub_settings, unique)
    key = feed.key(1)
    feed.publish(1, "Runner", version(10))
    wait_bodies(http_sink, a, 1, pipeline, key)
    since = datetime.now(UTC)
    feed.publish(1, "Runner 1", version(11))
    old = wait_bodies(http_sink, a, 2, pipeline, key)[1]
    until = datetime.now(UTC)
    feed.publish(1, "Runner 2", version(12))
    wait_bodies(http_sink, a, 3, pipeline, key)

    def run(mode: str) -> str:
        report = replay(
            hub_settings,
            ReplayOptions(
                integrations=(a,),
                mode=mode,  # type: ignore[arg-type]
                since=since,
                until=until,
                filter=EntityFilter(key_pattern=key),
                run_id=f"{mode}-{unique}",
            ),
        )
        assert report.matched == 1 and report.total_jobs == 1
        return rerun_job_id(old["mutation_id"], a, report.run_id)

    guarded = run("guarded")
    assert wait_statuses(database_url, [guarded], pipeline) == {guarded: "skipped"}
    assert not [x for x in bodies(http_sink, a, key) if x["job_id"] == guarded]

    forced = run("force")
    assert wait_statuses(database_url, [forced], pipeline) == {forced: "delivered"}
    body = next(x for x in bodies(http_sink, a, key) if x["job_id"] == forced)
    assert body["mode"] == "replay-force"
    assert [(c["attribute"], c["new"]) for c in body["changes"]] == [("name", "Runner 1")]
    set_enabled(database_url, a, False)


def target_value(received: list[dict[str, Any]], attribute: str) -> Any:
    """The value a target holds after applying the bodies in arrival order."""
    value = None
    for body in received:
        for c in body["changes"]:
            if c["field"] == "values" and c["attribute"] == attribute:
                value = c["new"]
    return value


def test_replay_during_live_updates_leaves_the_newest_values(
    pipeline: Supervisor,
    hub_settings: Settings,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    a = f"rpl-{unique}"
    add_webhook(database_url, a, f"{http_sink.url}/{a}")
    time.sleep(REFRESH_S)
    feed = Feed(hub_settings, unique)
    key = feed.key(1)
    for n in range(4):
        feed.publish(1, f"v{n}", version(10, n))
    first = wait_bodies(http_sink, a, 4, pipeline, key)
    old_mutations = [b["mutation_id"] for b in first]

    result: dict[str, Any] = {}

    def run_replay() -> None:
        result["report"] = replay(
            hub_settings,
            ReplayOptions(
                integrations=(a,),
                filter=EntityFilter(frozenset({"product"}), key),
                rate=4.0,  # about a second for the history: live updates arrive meanwhile
                run_id=f"live-{unique}",
            ),
        )

    thread = threading.Thread(target=run_replay)
    thread.start()
    for n in range(4, 7):
        feed.publish(1, f"v{n}", version(10, n))
        time.sleep(0.3)
    thread.join(60)
    report = result["report"]
    assert report.matched >= 4
    replay_ids = [rerun_job_id(m, a, report.run_id) for m in old_mutations]
    final = wait_statuses(database_url, replay_ids, pipeline)
    wait_for(
        lambda: target_value(bodies(http_sink, a, key), "name") == "v6",
        timeout=60,
        what="the newest name at the target",
        supervisor=pipeline,
    )
    # Updates older than what the target had were never sent again (v3, at the version the
    # target has, may be sent again or skipped, depending on whether v4 got there first).
    assert [final[j] for j in replay_ids[1:3]] == ["skipped"] * 2
    time.sleep(1.0)
    assert target_value(bodies(http_sink, a, key), "name") == "v6"
    set_enabled(database_url, a, False)


def test_resync_brings_a_new_integration_to_the_full_current_state(
    pipeline: Supervisor,
    hub_settings: Settings,
    hub_env: dict[str, str],
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    live, new = f"rsl-{unique}", f"rsn-{unique}"
    add_webhook(database_url, live, f"{http_sink.url}/{live}")
    time.sleep(REFRESH_S)
    feed = Feed(hub_settings, unique)
    feed.publish(1, "one", version(10))
    feed.publish(1, "one, renamed", version(11))
    feed.publish(2, "two", version(10))
    feed.publish(3, "three", version(10))
    feed.publish(3, None, version(12))  # deleted: a new target must not get it
    # The delete (immediate) may overtake product 3's create (normal): the version guard then
    # skips the older create, so 4 or 5 requests arrive; the delete always does.
    wait_bodies(http_sink, live, 4, pipeline)
    add_webhook(database_url, new, f"{http_sink.url}/{new}")
    time.sleep(REFRESH_S)

    out = CliRunner().invoke(
        app,
        ["resync", "-i", new, "--key", feed.pattern, "--source", "log", "--no-progress"],
        env=hub_env,
    )
    assert out.exit_code == 0, out.output
    assert "from the mutation log" in out.output and "published 2 job(s)" in out.output
    got = wait_bodies(http_sink, new, 2, pipeline)
    by_key = {b["entity_key"]: b for b in got}
    assert set(by_key) == {feed.key(1), feed.key(2)}
    one = by_key[feed.key(1)]
    assert one["mode"] == "resync" and one["operation"] == "create"
    assert one["state"]["values"]["name"][0]["data"] == "one, renamed"
    assert {(c["field"], c["attribute"]) for c in one["changes"]} >= {
        ("values", "name"),
        ("values", "sku"),
        ("family", None),
        ("categories", None),
    }

    # From the PostgreSQL entity model: an entity only the model knows.
    key4 = feed.key(4)
    state = product(feed.uuid(4), "four", version(9))
    query(
        database_url,
        "INSERT INTO entities (entity_key, entity_type, code, version, mutation_id, operation,"
        " state, mutated_at) VALUES (%s, 'product', %s, %s, 'm-test', 'create', %s::jsonb, now())"
        " RETURNING entity_key",
        key4,
        state["identifier"],
        version(9),
        __import__("orjson").dumps(state).decode(),
    )
    out = CliRunner().invoke(
        app,
        ["resync", "-i", new, "--key", key4, "--source", "model", "--json"],
        env=hub_env,
    )
    assert out.exit_code == 0, out.output
    assert '"total_jobs": 1' in out.output
    four = wait_bodies(http_sink, new, 1, pipeline, key4)[0]
    assert four["mode"] == "resync" and four["state"]["values"]["name"][0]["data"] == "four"
    query(database_url, "DELETE FROM entities WHERE entity_key = %s RETURNING 1", key4)
    for iid in (live, new):
        set_enabled(database_url, iid, False)
