"""The dispatcher in-process on the real broker and PostgreSQL: retries, dead letters, redrive,
version guard, rate limits."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.types.json import Jsonb

from pim_hub.devstack.stack import wait_for
from pim_hub.drivers.base import DeliveryResult, Driver
from pim_hub.ops.dead import list_dead, redrive
from pim_hub.runtime import health
from pim_hub.runtime.health import Health
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.services.dispatcher.app import Dispatcher, run_in_thread
from pim_hub.services.dispatcher.settings import DispatcherOptions
from tests.integration.test_dispatcher_helpers import (
    SERDE,
    RecordingDriver,
    TopicWatcher,
    add_integration,
    catalogue_with,
    change,
    final_statuses,
    job_record,
    produce_jobs,
    recording_driver,
    status_watcher,
    version,
)

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def dispatching(
    settings: Settings, driver: type[Driver], *priorities: str, **options: Any
) -> Iterator[list[Dispatcher]]:
    """Dispatchers of one test driver, running in threads until the block ends."""
    opts = DispatcherOptions.from_settings(settings, linger_ms=5, **options)
    cat = catalogue_with(driver)
    disps = [Dispatcher(settings, driver.key, p, cat, opts) for p in priorities or ("normal",)]
    stops = [run_in_thread(d) for d in disps]
    try:
        yield disps
    finally:
        for stop in stops:
            stop()
    for d in disps:
        assert d.failure is None, d.failure


def _setup(
    hub_settings: Settings, database_url: str, unique: str, config: dict[str, Any] | None = None
) -> tuple[type[RecordingDriver], str]:
    driver = recording_driver(f"rec{unique}")
    integration = f"it-{unique}"
    add_integration(database_url, catalogue_with(driver), integration, driver.key, {})
    if config:
        # The registry's validation does not know the dispatcher's `rate_limit` key yet.
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "UPDATE integrations SET config = config || %s WHERE id = %s",
                (Jsonb(config), integration),
            )
    return driver, integration


def test_retry_tiers_grow_then_deliver(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    key = f"product:{unique}"
    driver.script[key] = [DeliveryResult.retry("503"), DeliveryResult.retry("503")]
    watch = status_watcher(hub_settings, integ)
    job = job_record(integ, driver.key, "normal", key, [change("name", "x")], version(1))
    with dispatching(hub_settings, driver) as (disp,):
        produce_jobs(hub_settings, [job])
        statuses = watch.wait(
            lambda s: any(r["status"] == "delivered" for r in s), 30, "delivery after retries"
        )
        # What operators (and the demo's start) read to know a dispatcher is in its group.
        held = REGISTRY.get_sample_value(
            "pimhub_dispatcher_partitions", {"driver": driver.key, "priority": "normal"}
        )
        assert held == len(disp._parts) > 0
    watch.close()
    assert [(s["status"], s["attempt"]) for s in statuses] == [
        ("retrying", 1),
        ("retrying", 2),
        ("delivered", 3),
    ]
    times = [t for t, _ in driver.calls]
    # Tiers of the test settings: 1 s, then 2 s.
    assert times[1] - times[0] >= 0.95
    assert times[2] - times[1] >= 1.95
    assert [j.attempt for _, j in driver.calls] == [1, 2, 3]


def test_idle_retry_tiers_rest_and_a_retry_still_comes_back(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    """Retry partitions with nothing to read are paused between looks (fewer partitions in
    every fetch); one written meanwhile is read when its tier comes round."""
    driver, integ = _setup(hub_settings, database_url, unique)
    key = f"product:{unique}"
    driver.script[key] = [DeliveryResult.retry("503")]
    watch = status_watcher(hub_settings, integ)
    job = job_record(integ, driver.key, "normal", key, [change("name", "x")], version(1))
    with dispatching(hub_settings, driver) as (disp,):

        def all_resting() -> bool:
            resting = dict(disp._not_due)
            retry = [tp for tp in list(disp._parts) if tp[0] in disp.retry_topics]
            return bool(retry) and all(tp in resting for tp in retry)

        wait_for(all_resting, 30, what="every idle retry partition resting")
        produce_jobs(hub_settings, [job])
        statuses = watch.wait(
            lambda s: any(r["status"] == "delivered" for r in s), 30, "delivery after a retry"
        )
    watch.close()
    assert [(s["status"], s["attempt"]) for s in statuses] == [("retrying", 1), ("delivered", 2)]
    first, second = (t for t, _ in driver.calls)
    # The 1 s tier of the test settings, plus at most one rest (0.5 s) and the fetch.
    assert 0.95 <= second - first < 1.0 + disp.retry_rest_s() + 3


def test_retry_after_is_honoured(hub_settings: Settings, database_url: str, unique: str) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    key = f"product:{unique}"
    driver.script[key] = [DeliveryResult.retry("429", retry_after=2.5, status=429)]
    watch = status_watcher(hub_settings, integ)
    job = job_record(integ, driver.key, "normal", key, [change("name", "x")], version(1))
    with dispatching(hub_settings, driver):
        produce_jobs(hub_settings, [job])
        watch.wait(lambda s: any(r["status"] == "delivered" for r in s), 30, "delivered")
    watch.close()
    first, second = (t for t, _ in driver.calls)
    assert second - first >= 2.45  # not the 1 s first tier


def test_dead_letters_and_redrive(hub_settings: Settings, database_url: str, unique: str) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    bad, flaky = f"product:bad{unique}", f"product:flaky{unique}"
    driver.script[bad] = [DeliveryResult.permanent("sku rejected", status=422, kind="http_422")]
    driver.script[flaky] = [DeliveryResult.retry("timeout", kind="timeout")] * 2
    watch = status_watcher(hub_settings, integ)
    dead_watch = TopicWatcher(
        hub_settings, topics.JOBS_DEAD, None, lambda v: integ.encode() in (v[0] or b"")
    )
    jobs = [
        job_record(integ, driver.key, "normal", bad, [change("name", "b")], version(1)),
        job_record(integ, driver.key, "low", flaky, [change("name", "f")], version(1)),
    ]
    with dispatching(hub_settings, driver, "normal", "low", max_attempts=2):
        produce_jobs(hub_settings, jobs)
        statuses = watch.wait(
            lambda s: sum(r["status"] == "dead" for r in s) == 2, 30, "two dead jobs"
        )
        dead = dead_watch.wait(lambda d: len(d) == 2, 10, "two dead letters")
        by_job = {SERDE.decode("Job", v)["job_id"]: h for v, h in dead}
        assert by_job[jobs[0]["job_id"]]["error.type"] == b"http_422"
        assert b"sku rejected" in by_job[jobs[0]["job_id"]]["error.message"]
        assert by_job[jobs[1]["job_id"]]["error.type"] == b"timeout"
        assert b"attempts exhausted (2)" in by_job[jobs[1]["job_id"]]["error.message"]
        listed = list_dead(hub_settings, integration=integ)
        assert {d.job_id for d in listed} == {j["job_id"] for j in jobs}
        assert [d.job_id for d in list_dead(hub_settings, integ, "http_422")] == [jobs[0]["job_id"]]

        # Redrive one job by id: back on its priority topic, attempt 1, delivered this time.
        report = redrive(hub_settings, job_ids=[jobs[0]["job_id"]])
        assert report.redriven == [jobs[0]["job_id"]]
        assert redrive(hub_settings, job_ids=[jobs[0]["job_id"]]).redriven == []  # never twice
        # Then the rest of the integration.
        assert redrive(hub_settings, integration=integ).redriven == [jobs[1]["job_id"]]
        statuses = watch.wait(
            lambda s: list(final_statuses(s).values()) == ["delivered", "delivered"],
            30,
            "redriven jobs delivered",
        )
    watch.close()
    dead_watch.close()
    redrives = [s for s in statuses if s["error_kind"] == "redrive"]
    assert {s["job_id"] for s in redrives} == {j["job_id"] for j in jobs}
    assert all(s["status"] == "retrying" and s["attempt"] == 1 for s in redrives)
    delivered = {j.job_id: j for _, j in driver.calls if j.mode == "redrive"}
    assert set(delivered) == {j["job_id"] for j in jobs}
    assert all(j.attempt == 1 for j in delivered.values())
    assert list_dead(hub_settings, integration=integ) == []


def test_version_guard_under_reordering(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    key = f"product:{unique}"
    watch = status_watcher(hub_settings, integ)

    def run(job: dict[str, Any], n: int) -> dict[str, Any]:
        produce_jobs(hub_settings, [job])
        statuses = watch.wait(lambda s: len(s) >= n, 20, f"status {n}")
        assert statuses[n - 1]["job_id"] == job["job_id"]
        status: dict[str, Any] = statuses[n - 1]
        return status

    with dispatching(hub_settings, driver, "immediate", "low"):
        newer = job_record(
            integ, driver.key, "immediate", key, [change("name", "new")], version(20)
        )
        assert run(newer, 1)["status"] == "delivered"
        # An older change arriving late on the low priority: only its unseen field goes out.
        older = job_record(
            integ,
            driver.key,
            "low",
            key,
            [change("name", "old"), change("price", 5)],
            version(10),
        )
        partial = run(older, 2)
        assert partial["status"] == "delivered"
        assert partial["error_kind"] == "version_guard"
        sent = driver.calls[-1][1]
        assert [c.attribute for c in sent.mutation.changes] == ["price"]
        # Entirely older: skipped with a reason, the driver is not called.
        calls = len(driver.calls)
        oldest = job_record(integ, driver.key, "low", key, [change("name", "x")], version(5))
        skipped = run(oldest, 3)
        assert skipped["status"] == "skipped"
        assert "older" in skipped["error_message"]
        # A delete older than a delivered update is skipped; a newer one is delivered ...
        old_delete = job_record(integ, driver.key, "low", key, [], version(15), "delete")
        assert run(old_delete, 4)["status"] == "skipped"
        delete = job_record(integ, driver.key, "immediate", key, [], version(30), "delete")
        assert run(delete, 5)["status"] == "delivered"
        # ... and then an update older than that delete is skipped.
        late = job_record(integ, driver.key, "low", key, [change("name", "late")], version(25))
        assert run(late, 6)["status"] == "skipped"
        assert len(driver.calls) == calls + 1  # only the newer delete reached the driver
        # replay-force bypasses the guard; a guarded replay does not.
        guarded = job_record(
            integ, driver.key, "low", key, [change("name", "r")], version(1), mode="replay-guarded"
        )
        assert run(guarded, 7)["status"] == "skipped"
        forced = job_record(
            integ, driver.key, "low", key, [change("name", "r")], version(1), mode="replay-force"
        )
        assert run(forced, 8)["status"] == "delivered"
        assert driver.calls[-1][1].job_id == forced["job_id"]
    watch.close()


def test_rate_limits_pace_one_integration_not_the_others(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    limit = {"rate_limit": {"requests_per_s": 10, "concurrent": 2, "burst": 1}}
    driver, slow = _setup(hub_settings, database_url, unique, limit)
    driver.delay_s = 0.25  # slower than 1 / rate: the concurrency limit matters too
    fast = f"fast-{unique}"
    add_integration(database_url, catalogue_with(driver), fast, driver.key, {})
    slow_watch, fast_watch = status_watcher(hub_settings, slow), status_watcher(hub_settings, fast)
    entity = f"product:one{unique}"
    slow_jobs = [
        job_record(slow, driver.key, "normal", f"product:{i}{unique}", [change("n", i)], version(i))
        for i in range(15)
    ] + [
        job_record(slow, driver.key, "normal", entity, [change("n", i)], version(i))
        for i in range(15)
    ]
    fast_jobs = [
        job_record(fast, driver.key, "normal", f"product:{i}{unique}", [change("n", i)], version(i))
        for i in range(20)
    ]
    # A tiny buffer makes the dispatcher pause and resume partitions while it waits.
    with dispatching(hub_settings, driver, max_buffered=4):
        start = time.monotonic()
        produce_jobs(hub_settings, slow_jobs + fast_jobs)
        fast_watch.wait(lambda s: len(s) == 20, 20, "fast integration done")
        fast_done = time.monotonic() - start
        slow_watch.wait(lambda s: len(s) == 30, 30, "slow integration done")
        slow_done = time.monotonic() - start
    slow_watch.close()
    fast_watch.close()
    print("TIMING", fast_done, slow_done)
    assert fast_done < slow_done
    # 30 requests of 0.25 s, 2 at a time and 10/s at most: no sooner than ~3.5 s.
    slow_times = sorted(t for t, j in driver.calls if j.integration_id == slow)
    assert slow_times[-1] - slow_times[0] >= 3.4
    gaps = [b - a for a, b in itertools.pairwise(slow_times)]
    assert min(gaps) >= 0.07
    assert driver.active[slow][1] == 2
    same = [j for _, j in driver.calls if j.mutation.entity_key == entity]
    assert [j.mutation.version for j in same] == [version(i) for i in range(15)]  # entity order


def test_the_byte_budget_bounds_the_buffer_and_drops_nothing(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    driver.delay_s = 0.01
    watch = status_watcher(hub_settings, integ)
    big = "x" * 4000  # a creation-sized value: about 4 KB a record
    entities = [f"product:{i}{unique}" for i in range(8)]
    jobs = [
        job_record(integ, driver.key, "normal", entities[i % 8], [change("d", big)], version(i))
        for i in range(48)
    ]
    largest = max(len(SERDE.encode("Job", j)) for j in jobs)
    budget = 20_000
    # Every job is on the topic before the dispatcher's first poll, so its polls find more
    # than the budget holds (jobs produced while it runs may come a few at a time, each poll
    # under the budget, and the returns this test is about would not happen).
    produce_jobs(hub_settings, jobs)
    with dispatching(hub_settings, driver, max_buffered_bytes=budget) as (disp,):
        statuses = watch.wait(lambda s: len(s) >= 48, 60, "every job reported")
    watch.close()
    assert final_statuses(statuses) == {j["job_id"]: "delivered" for j in jobs}
    assert len(statuses) == 48  # each once: nothing read twice, nothing dropped
    # The buffer filled up to the budget and never held more than one record beyond it:
    # polls are cut to what fits, and records of a poll beyond the budget go back to the
    # broker (`budget_returns`, whether a poll overshoots depends on what else is on the
    # topic). Unbounded, the 48 jobs of about 4 KB would have been taken at once.
    assert disp.stats.peak_buffered_bytes >= budget - largest
    assert disp.stats.peak_buffered_bytes < budget + largest
    for entity in entities:  # per-entity order kept across the pauses
        sent = [j.mutation.version for _, j in driver.calls if j.mutation.entity_key == entity]
        assert sent == [version(i) for i in range(48) if entities[i % 8] == entity]


def test_a_stopped_dispatcher_leaves_no_loop_in_the_health_registry(
    hub_settings: Settings, database_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registry is the process's: a stopped dispatcher's last beats would fail the
    # liveness of whatever runs after it. A registry of this test's own sees only its loops.
    fresh = Health()
    monkeypatch.setattr(health, "HEALTH", fresh)
    driver, _ = _setup(hub_settings, database_url, unique)
    with dispatching(hub_settings, driver):
        wait_for(
            lambda: {"loop:poll", "loop:event-loop"} <= set(fresh.liveness()["checks"]),
            timeout=60,
            what="the dispatcher's loops watched",
        )
    assert fresh.liveness()["checks"] == {}
