"""The circuit breaker on the real broker and PostgreSQL: a target down, then back.

While the target refuses every call, the integration's jobs wait in the dispatcher (no
attempt spent, none dead) and one probe at a time checks the target; once it answers, the
backlog goes out at once, the retries scheduled during the outage included.
"""

from __future__ import annotations

import json
import logging
import time
from typing import ClassVar

import psycopg
import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.drivers.base import DeliveryResult, IntegrationContext
from pim_hub.ops.circuits import circuits
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.events import Job
from pim_hub.services.dispatcher.core.breaker import BreakerPolicy
from tests.integration.test_dispatcher import dispatching
from tests.integration.test_dispatcher_helpers import (
    RecordingDriver,
    add_integration,
    catalogue_with,
    change,
    enabled_integration,
    final_statuses,
    job_record,
    lane_sample,
    numbered_jobs,
    produce_jobs,
    status_watcher,
    version,
)

pytestmark = pytest.mark.integration

# The low lane: these tests' jobs stay off hub.jobs.normal, which other tests read from its
# start in one poll.

#: Opens after three outages in a row, probes every 0.2 s to 1 s: a test's outage is seconds.
QUICK = BreakerPolicy(threshold=3, probe_min_s=0.2, probe_max_s=1.0)


class TargetDriver(RecordingDriver):
    """A recording driver whose target can be down (connection refused) or answer 503."""

    down: ClassVar[str | None] = None  # None: up; "refused"; "503"

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Record the call; answer from the script, fail like a target that is down, or deliver."""
        cls = type(self)
        cls.calls.append((time.monotonic(), job))
        queue = cls.script.get(job.mutation.entity_key)
        if queue:
            return queue.pop(0)
        if cls.down == "refused":
            return DeliveryResult.retry("cannot reach the target: refused", kind="connection")
        if cls.down == "503":
            return DeliveryResult.retry("HTTP 503", status=503, kind="http_503")
        return DeliveryResult.delivered()


def target_driver(key: str) -> type[TargetDriver]:
    return type(
        f"Target_{key}",
        (TargetDriver,),
        {"key": key, "script": {}, "calls": [], "active": {}, "down": None},
    )


def target_integration(database_url: str, key: str, unique: str) -> tuple[type[TargetDriver], str]:
    """A fresh target driver (up) under `key` and the test's enabled integration of it."""
    driver = target_driver(key)
    return driver, enabled_integration(database_url, driver, unique)


def circuit_rows(database_url: str, integration: str) -> list[tuple[str, str]]:
    """(state, process) of the integration's rows in dispatcher_circuits."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT state, process FROM dispatcher_circuits WHERE integration_id = %s",
            (integration,),
        ).fetchall()


def wait_closed_row(database_url: str, integration: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if [s for s, _ in circuit_rows(database_url, integration)] == ["closed"]:
            return
        time.sleep(0.1)
    raise AssertionError(circuit_rows(database_url, integration))


def circuit(driver: str, integration: str) -> float | None:
    return lane_sample("pimhub_dispatcher_circuit_state", driver, integration)


def wait_open(driver: str, integration: str) -> bool:
    """Wait up to 60 s for the integration's circuit to open; whether it did."""
    deadline = time.monotonic() + 60
    while circuit(driver, integration) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return circuit(driver, integration) == 2


@pytest.mark.parametrize("failure", ["refused", "503"])
def test_an_outage_pauses_the_integration_and_the_backlog_drains_on_return(
    hub_settings: Settings,
    database_url: str,
    unique: str,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver, integ = target_integration(database_url, f"tgt{unique}", unique)
    driver.down = failure
    jobs = numbered_jobs(integ, driver.key, unique, 30)
    watch = status_watcher(hub_settings, integ)
    caplog.set_level(logging.WARNING, logger="pim_hub.services.dispatcher.app")
    with dispatching(hub_settings, driver, "low", breaker=QUICK, max_attempts=2):
        produce_jobs(hub_settings, jobs)
        assert wait_open(driver.key, integ), "the circuit never opened"
        opened = time.monotonic()
        time.sleep(4.0)  # longer than the retry tiers (1 s, 2 s) and max_attempts (2)
        # The row the dispatcher writes (what `hub integrations show` reads).
        [row] = circuits(database_url, integ)
        assert row["state"] in ("open", "half_open") and not row["stale"], row
        assert row["opened_at"] is not None and row["last_probe"] is not None
        during = [t for t, _ in driver.calls if t > opened + 0.5]
        driver.down = None
        back = time.monotonic()
        statuses = watch.wait(
            lambda s: sum(x["status"] == "delivered" for x in s) >= 30, 60, "the backlog"
        )
        drained = time.monotonic() - back
        assert circuit(driver.key, integ) == 0
        wait_closed_row(database_url, integ)
    # A dispatcher that stops takes its rows with it.
    assert circuit_rows(database_url, integ) == []
    watch.close()
    # Probes only, one at a time, backing off: a few, not one attempt per job and tier.
    assert 1 <= len(during) <= 8, len(during)
    assert drained < 5.0, drained
    final = final_statuses(statuses)
    assert set(final.values()) == {"delivered"}  # none dead, though max_attempts is 2
    # Only what failed before the circuit opened went to a retry tier.
    assert sum(x["status"] == "retrying" for x in statuses) < 3
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("circuit opened") for m in messages)
    assert any(m.startswith("circuit closed") for m in messages)


def test_a_job_the_target_rejects_does_not_open_the_circuit(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = target_integration(database_url, f"rej{unique}", unique)
    jobs = numbered_jobs(integ, driver.key, unique, 6)
    for job in jobs[:5]:
        driver.script[job["mutation"]["entity_key"]] = [
            DeliveryResult.permanent("rejected", status=422, kind="http_422")
        ]
    watch = status_watcher(hub_settings, integ)
    with dispatching(hub_settings, driver, "low", breaker=QUICK):
        produce_jobs(hub_settings, jobs)
        statuses = watch.wait(lambda s: len(s) >= 6, 60, "every job")
        assert circuit(driver.key, integ) == 0
    watch.close()
    assert sorted(final_statuses(statuses).values()) == ["dead"] * 5 + ["delivered"]


def test_an_outage_past_the_ceiling_sends_the_jobs_to_the_dead_letters(
    hub_settings: Settings, database_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    driver, integ = target_integration(database_url, f"ceil{unique}", unique)
    driver.down = "refused"
    jobs = numbered_jobs(integ, driver.key, unique, 8)
    watch = status_watcher(hub_settings, integ)
    policy = BreakerPolicy(threshold=3, probe_min_s=0.2, probe_max_s=0.5, ceiling_s=3.0)
    caplog.set_level(logging.WARNING, logger="pim_hub.services.dispatcher.app")
    with dispatching(hub_settings, driver, "low", breaker=policy, max_attempts=2):
        produce_jobs(hub_settings, jobs)
        assert wait_open(driver.key, integ), "the circuit never opened"
        opened = lane_sample(
            "pimhub_dispatcher_circuit_opened_timestamp_seconds", driver.key, integ
        )
        assert opened is not None and abs(opened - time.time()) < 30
        ceiling = lane_sample("pimhub_dispatcher_outage_ceiling_seconds", driver.key, integ)
        assert ceiling == 3.0
        time.sleep(2.0)  # within the ceiling: held, nothing dead
        assert not [s for s in watch.snapshot() if s["status"] == "dead"]
        statuses = watch.wait(
            lambda s: sum(x["status"] == "dead" for x in s) >= 8, 60, "every job dead"
        )
    watch.close()
    assert set(final_statuses(statuses).values()) == {"dead"}
    dead = [s for s in statuses if s["status"] == "dead"]
    assert all("attempts exhausted" in (s["error_message"] or "") for s in dead)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("outage ceiling passed") for m in messages)


def test_integrations_show_tells_each_dispatchers_circuit(
    hub_env: dict[str, str], hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = target_integration(database_url, f"show{unique}", unique)
    driver.down = "503"
    jobs = numbered_jobs(integ, driver.key, unique, 4)
    policy = BreakerPolicy(threshold=2, probe_min_s=0.5, probe_max_s=1.0)
    with dispatching(hub_settings, driver, "low", breaker=policy, max_in_flight=3):
        produce_jobs(hub_settings, jobs)
        wait_open(driver.key, integ)  # whether it opened: the rows shown below tell
        time.sleep(1.5)  # a probe or two
        shown = CliRunner().invoke(app, ["integrations", "show", integ], env=hub_env)
        driver.down = None
        wait_closed_row(database_url, integ)
        closed = CliRunner().invoke(app, ["integrations", "show", integ], env=hub_env)
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.stdout)["circuits"]
    assert row["state"] in ("open", "half_open") and not row["stale"], row
    assert (row["driver"], row["priority"]) == (driver.key, "low")
    assert row["opened_at"] is not None and row["last_probe"] is not None
    assert row["concurrency"] == row["concurrency_max"] == 3  # an outage is no throttling
    assert f"the circuit of {integ} (low) is" in shown.stderr
    [row] = json.loads(closed.stdout)["circuits"]
    assert row["state"] == "closed" and row["opened_at"] is None
    assert "the circuit of" not in closed.stderr


class TwoTargetsDriver(TargetDriver):
    """Two integrations of one driver: the targets of those in `down_for` refuse connections."""

    down_for: ClassVar[set[str]] = set()

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Refuse for an integration that is down, else deliver; record the call."""
        cls = type(self)
        cls.calls.append((time.monotonic(), job))
        if job.integration_id in cls.down_for:
            return DeliveryResult.retry("cannot reach the target: refused", kind="connection")
        return DeliveryResult.delivered()


def test_jobs_of_an_open_circuit_do_not_keep_other_integrations_waiting(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver: type[TwoTargetsDriver] = type(
        f"Two_{unique}",
        (TwoTargetsDriver,),
        {"key": f"two{unique}", "script": {}, "calls": [], "active": {}, "down_for": set()},
    )
    cat = catalogue_with(driver)
    down, up = f"down-{unique}", f"up-{unique}"
    add_integration(database_url, cat, down, driver.key, {})
    add_integration(database_url, cat, up, driver.key, {})
    driver.down_for = {down}
    n_down, n_up = 150, 30

    def jobs(integ: str, n: int, start: int = 0) -> list[dict[str, object]]:
        return [
            job_record(
                integ,
                driver.key,
                "low",
                f"product:{i}{unique}",
                [change("n", "x" * 200)],
                version(i),
            )
            for i in range(start, start + n)
        ]

    watch_down, watch_up = status_watcher(hub_settings, down), status_watcher(hub_settings, up)
    policy = BreakerPolicy(threshold=3, probe_min_s=0.5, probe_max_s=1.0)
    # A buffer of a few dozen jobs: the held ones of the target that is down fill it.
    with dispatching(
        hub_settings, driver, "low", breaker=policy, max_attempts=2, max_buffered_bytes=30_000
    ) as [disp]:
        produce_jobs(hub_settings, jobs(down, n_down))
        assert wait_open(driver.key, down), "the circuit never opened"
        # The other integration's jobs come after the backlog of the one that is down.
        produce_jobs(hub_settings, jobs(up, n_up))
        delivered_up = watch_up.wait(
            lambda s: sum(x["status"] == "delivered" for x in s) >= n_up, 60, "the other target"
        )
        assert circuit(driver.key, down) == 2  # still down meanwhile
        assert disp.stats.parked > 0
        parked = lane_sample("pimhub_dispatcher_held_total", driver.key, down, reason="parked")
        assert parked is not None and parked > 0
        driver.down_for = set()
        back = time.monotonic()
        statuses = watch_down.wait(
            lambda s: len({x["job_id"] for x in s if x["status"] == "delivered"}) >= n_down,
            90,
            "the backlog of the target that came back",
        )
        drained = time.monotonic() - back
    watch_down.close()
    watch_up.close()
    assert set(final_statuses(delivered_up).values()) == {"delivered"}
    final = final_statuses(statuses)
    assert len(final) == n_down and set(final.values()) == {"delivered"}  # none dead, none lost
    assert drained < 20, drained
