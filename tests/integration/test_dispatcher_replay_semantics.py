"""Guarded replays on the real broker and PostgreSQL: only what the target lacks goes out.

The histories of the delivery-semantics document (docs/delivery-semantics.md): a product
created and updated twice, all delivered, then replayed; an update and a deletion at one
version; a change that failed, then came back with a replay.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from pim_hub.drivers.base import DeliveryResult
from pim_hub.ops.replay import rerun_job_id
from pim_hub.runtime.settings import Settings
from tests.integration.test_dispatcher import _setup, dispatching
from tests.integration.test_dispatcher_helpers import (
    change,
    final_statuses,
    job_record,
    produce_jobs,
    status_watcher,
    version,
)

pytestmark = pytest.mark.integration


def replayed(job: dict[str, Any], run_id: str, priority: str | None = None) -> dict[str, Any]:
    """The job a guarded `hub replay` makes of the same mutation: a new id per run."""
    again = copy.deepcopy(job)
    again["job_id"] = rerun_job_id(job["mutation"]["mutation_id"], job["integration_id"], run_id)
    again["mode"] = "replay-guarded"
    if priority is not None:
        again["priority"] = priority
    return again


def test_a_guarded_replay_sends_nothing_the_target_has(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    key = f"product:{unique}"
    # A creation of 19 values, a description update, a price update.
    values = [change(f"attr{i}", f"v{i}") for i in range(17)]
    create = job_record(
        integ,
        driver.key,
        "normal",
        key,
        [*values, change("description", "d1"), change("price", 1)],
        version(1),
        "create",
    )
    describe = job_record(
        integ, driver.key, "normal", key, [change("description", "d2")], version(2)
    )
    price = job_record(integ, driver.key, "normal", key, [change("price", 2)], version(3))
    live = [create, describe, price]
    watch = status_watcher(hub_settings, integ)
    with dispatching(hub_settings, driver):
        produce_jobs(hub_settings, live)
        watch.wait(lambda s: len(s) >= 3, 60, "the live jobs")
        calls = len(driver.calls)
        assert calls == 3
        run = uuid.uuid4().hex[:12]
        replay = [replayed(j, run) for j in live]
        produce_jobs(hub_settings, replay)
        statuses = watch.wait(lambda s: len(s) >= 6, 60, "the replayed jobs")
    watch.close()
    assert final_statuses(statuses) == {j["job_id"]: "delivered" for j in live + replay}
    assert len(driver.calls) == calls, [
        (j.mode, len(j.mutation.changes)) for _, j in driver.calls[calls:]
    ]
    again = {s["job_id"]: s for s in statuses[3:]}
    assert all(again[j["job_id"]]["error_kind"] == "version_guard" for j in replay)


def test_a_deletion_at_an_updates_version_wins_live_and_replayed(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    key = f"product:{unique}"
    create = job_record(
        integ, driver.key, "normal", key, [change("name", "n")], version(1), "create"
    )
    update = job_record(integ, driver.key, "normal", key, [change("name", "m")], version(5))
    delete = job_record(integ, driver.key, "normal", key, [], version(5), "delete")
    watch = status_watcher(hub_settings, integ)
    with dispatching(hub_settings, driver, "normal", "immediate"):
        produce_jobs(hub_settings, [create, update, delete])
        watch.wait(lambda s: len(s) >= 3, 60, "the live jobs")
        assert [j.mutation.operation for _, j in driver.calls] == ["create", "update", "delete"]
        # The replay: the deletion on the immediate lane, delivered before the update.
        run = uuid.uuid4().hex[:12]
        first = replayed(delete, run, "immediate")
        produce_jobs(hub_settings, [first])
        watch.wait(lambda s: len(s) >= 4, 60, "the replayed deletion")
        late = [replayed(create, run), replayed(update, run)]
        produce_jobs(hub_settings, late)
        statuses = watch.wait(lambda s: len(s) >= 6, 60, "the replayed update")
        # Live too: an update at the deletion's version, arriving after it, is refused.
        same = job_record(integ, driver.key, "normal", key, [change("name", "z")], version(5))
        produce_jobs(hub_settings, [same])
        statuses = watch.wait(lambda s: len(s) >= 7, 60, "the late update")
    watch.close()
    assert len(driver.calls) == 3  # nothing after the live deletion reached the target
    by_job = {s["job_id"]: s for s in statuses}
    assert by_job[first["job_id"]]["status"] == "delivered"  # already deleted
    for job in [*late, same]:
        assert by_job[job["job_id"]]["status"] == "skipped"
        assert "deleted" in by_job[job["job_id"]]["error_message"]


def test_a_change_the_target_never_got_is_sent_by_a_guarded_replay(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    key = f"product:{unique}"
    driver.script[key] = [
        DeliveryResult.delivered(),
        DeliveryResult.permanent("rejected", status=422, kind="http_422"),
    ]
    create = job_record(
        integ,
        driver.key,
        "normal",
        key,
        [change("name", "n"), change("price", 1)],
        version(1),
        "create",
    )
    failed = job_record(integ, driver.key, "normal", key, [change("name", "m")], version(2))
    price = job_record(integ, driver.key, "normal", key, [change("price", 3)], version(3))
    watch = status_watcher(hub_settings, integ)
    with dispatching(hub_settings, driver):
        produce_jobs(hub_settings, [create, failed, price])
        watch.wait(lambda s: len(s) >= 3, 60, "the live jobs")
        run = uuid.uuid4().hex[:12]
        replay = [replayed(j, run) for j in (create, failed, price)]
        produce_jobs(hub_settings, replay)
        statuses = watch.wait(lambda s: len(s) >= 6, 60, "the replayed jobs")
    watch.close()
    assert final_statuses(statuses)[failed["job_id"]] == "dead"
    sent = [j for _, j in driver.calls if j.mode == "replay-guarded"]
    assert [(j.mutation.mutation_id, [c.attribute for c in j.mutation.changes]) for j in sent] == [
        (failed["mutation"]["mutation_id"], ["name"])
    ]
