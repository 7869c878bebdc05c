"""Dispatcher processes under SIGKILL, scaling and SIGTERM, on the real broker and PostgreSQL."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.settings import Settings
from tests import webhook_schema
from tests.integration.test_dispatcher_helpers import (
    TopicWatcher,
    WebhookTestDriver,
    add_integration,
    catalogue_with,
    change,
    final_statuses,
    job_record,
    produce_jobs,
    status_watcher,
    version,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    s = HttpSink().start()
    yield s
    s.stop()
    webhook_schema.record_sink(s.requests)


def _start(supervisor: Supervisor, name: str, priority: str) -> Any:
    """A dispatcher of the test driver (its processes know it: HUB_EXTRA_DRIVERS in hub_env)."""
    return supervisor.start(name, "dispatcher", "--driver", "webhook_test", "--priority", priority)


def _integration(database_url: str, name: str, sink: HttpSink, **config: Any) -> str:
    add_integration(
        database_url,
        catalogue_with(WebhookTestDriver),
        name,
        "webhook_test",
        {"url": f"{sink.url}/{name}", "include_state": False, **config},
    )
    return name


def _jobs(
    integ: str, priority: str, entities: int, versions: int, tag: str
) -> list[dict[str, Any]]:
    # Entity by entity in version order, as the mutator would publish them.
    return [
        job_record(
            integ,
            "webhook_test",
            priority,
            f"product:{tag}-{e}",
            [change("name", f"v{v}")],
            version(v),
        )
        for v in range(1, versions + 1)
        for e in range(entities)
    ]


def _wait_all_delivered(watch: TopicWatcher, ids: set[str], timeout: float, what: str) -> list[Any]:
    """Wait until every job of `ids` has a status and every latest status seen is delivered."""
    return watch.wait(
        lambda s: (
            set(final_statuses(s)) >= ids
            and all(v == "delivered" for v in final_statuses(s).values())
        ),
        timeout,
        what,
    )


def test_sigkill_at_random_moments_loses_nothing(
    supervisor: Supervisor, hub_settings: Settings, database_url: str, sink: HttpSink, unique: str
) -> None:
    integ = _integration(database_url, f"crash-{unique}", sink)
    supervisor.env["HUB_DISPATCHER_MAX_IN_FLIGHT"] = "4"
    watch = status_watcher(hub_settings, integ)
    jobs = _jobs(integ, "normal", 1000, 5, unique)
    produce_jobs(hub_settings, jobs)
    svc = _start(supervisor, "crash-0", "normal")
    rnd = random.Random()
    kills = 0
    for n in range(1, 4):
        # Kill while it works: after some statuses, at a random moment.
        seen = len(watch.snapshot())

        def progressed(statuses: list[Any], seen: int = seen) -> bool:
            return len(statuses) > seen

        watch.wait(progressed, 60, "progress before a kill")
        time.sleep(rnd.uniform(0.0, 1.0))
        supervisor.kill(svc)
        kills += 1
        svc = _start(supervisor, f"crash-{n}", "normal")
    ids = {j["job_id"] for j in jobs}
    statuses = _wait_all_delivered(watch, ids, 150, "every job delivered")
    watch.close()
    assert kills == 3
    final = final_statuses(statuses)
    assert set(final) == ids  # none lost, nothing foreign
    assert set(final.values()) == {"delivered"}  # exactly one final status each
    # The target: each entity got every version, never an older one after a newer one,
    # and ends at its last version.
    seen_versions: dict[str, list[str]] = defaultdict(list)
    for body in sink.bodies():
        # A request cut short by SIGKILL is no delivery: only complete JSON bodies count.
        if isinstance(body, dict) and body["integration_id"] == integ:
            seen_versions[body["entity_key"]].append(body["version"])
    assert len(seen_versions) == 1000
    for versions in seen_versions.values():
        assert versions == sorted(versions)
        assert sorted(set(versions)) == [version(v) for v in range(1, 6)]
        assert versions[-1] == version(5)


def test_group_of_three_survives_losing_one(
    supervisor: Supervisor, hub_settings: Settings, database_url: str, sink: HttpSink, unique: str
) -> None:
    integ = _integration(database_url, f"scale-{unique}", sink, delay_s=0.01)
    watch = status_watcher(hub_settings, integ)
    procs = [_start(supervisor, f"scale-{n}", "low") for n in range(3)]
    time.sleep(4)  # let all three join before the work arrives, so all three get partitions
    jobs = _jobs(integ, "low", 300, 3, unique)
    produce_jobs(hub_settings, jobs)
    watch.wait(lambda s: len(s) >= 150, 60, "work under way")
    supervisor.kill(procs[0])
    ids = {j["job_id"] for j in jobs}
    statuses = _wait_all_delivered(watch, ids, 90, "the other two finish")
    watch.close()
    assert all(p.alive() for p in procs[1:])
    assert set(final_statuses(statuses).values()) == {"delivered"}
    logs = [p.log_path.read_text(errors="replace") for p in procs]
    assert sum("job" in log or "dispatcher started" in log for log in logs) == 3


def test_sigterm_drains_within_the_timeout(
    supervisor: Supervisor, hub_settings: Settings, database_url: str, sink: HttpSink, unique: str
) -> None:
    integ = _integration(database_url, f"drain-{unique}", sink, delay_s=0.5)
    supervisor.env.update(
        {
            "HUB_DISPATCHER_SHUTDOWN_TIMEOUT_S": "5",
            # Two batches of four in flight: most jobs are still queued at SIGTERM.
            "HUB_DISPATCHER_BATCH_SIZE": "4",
            "HUB_DISPATCHER_MAX_IN_FLIGHT": "2",
        }
    )
    watch = status_watcher(hub_settings, integ)
    jobs = _jobs(integ, "immediate", 48, 1, unique)
    svc = _start(supervisor, "drain-0", "immediate")
    produce_jobs(hub_settings, jobs)
    watch.wait(lambda s: len(s) >= 8, 60, "first deliveries")
    started = time.monotonic()
    code = supervisor.stop(svc, timeout=20)
    took = time.monotonic() - started
    assert code == 0
    assert took < 5 + 3  # the drain budget plus leaving the group
    done_before = set(final_statuses(watch.snapshot()))
    assert len(done_before) < len(jobs)  # it stopped taking work
    _start(supervisor, "drain-1", "immediate")
    ids = {j["job_id"] for j in jobs}
    watch.wait(lambda s: set(final_statuses(s)) >= ids, 60, "the rest delivered")
    watch.close()
    # In-flight jobs were finished and committed, the rest handed back: each POSTed once.
    keys = [r.headers.get("Idempotency-Key", "") for r in sink.requests if r.path == f"/{integ}"]
    assert sorted(keys) == sorted(ids)
