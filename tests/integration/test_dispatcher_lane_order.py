"""Per-entity order across priority lanes, on the real broker and PostgreSQL.

One entity's create v1 and update v2 on `normal`, its price update v3 and deletion v4 on
`immediate`: delivered v1, v2, v3, v4, live and in a forced replay, while another entity's
immediate job still overtakes the normal backlog.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import psycopg
import pytest

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


def wait_pending(database_url: str, job_id: str, timeout: float = 60.0) -> None:
    """Until a dispatcher has read the job (its row in the pending list)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT 1 FROM dispatch_pending WHERE job_id = %s", (job_id,))
            if row.fetchone():
                return
            time.sleep(0.02)
    raise AssertionError(f"job {job_id} never read")


def forced(job: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The job a forced `hub replay` makes of the same mutation."""
    again = copy.deepcopy(job)
    again["job_id"] = rerun_job_id(job["mutation"]["mutation_id"], job["integration_id"], run_id)
    again["mode"] = "replay-force"
    return again


@pytest.mark.parametrize("replay", [False, True], ids=["live", "forced-replay"])
def test_one_entitys_jobs_keep_their_order_across_lanes(
    hub_settings: Settings, database_url: str, unique: str, replay: bool
) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    # The normal lane is busy: v2 is still pending when v3 arrives, and the immediate lane has
    # a few seconds to deliver another entity's job before v2 starts, even on a loaded machine.
    driver.delay_s = 2.5
    key, other = f"product:{unique}", f"product:other{unique}"
    v1 = job_record(integ, driver.key, "normal", key, [change("name", "n")], version(1), "create")
    v2 = job_record(integ, driver.key, "normal", key, [change("description", "d")], version(2))
    v3 = job_record(integ, driver.key, "immediate", key, [change("price", 3)], version(3))
    v4 = job_record(integ, driver.key, "immediate", key, [], version(4), "delete")
    elsewhere = job_record(integ, driver.key, "immediate", other, [change("price", 1)], version(1))
    jobs = [v1, v2, v3, v4]
    watch = status_watcher(hub_settings, integ)
    with dispatching(hub_settings, driver, "normal", "immediate") as disps:
        if replay:
            produce_jobs(hub_settings, jobs)  # live first, in order (one lane after the other)
            watch.wait(lambda s: len(s) >= 4, 120, "the live jobs")
            before = len(driver.calls)
            run = uuid.uuid4().hex[:12]
            jobs = [forced(j, run) for j in jobs]
        else:
            before = 0
        produce_jobs(hub_settings, jobs[:2])
        wait_pending(database_url, jobs[1]["job_id"])
        produce_jobs(hub_settings, [*jobs[2:], elsewhere])
        statuses = watch.wait(
            lambda s: {j["job_id"] for j in [*jobs, elsewhere]} <= {x["job_id"] for x in s},
            120,
            "every job",
        )
    watch.close()
    final = final_statuses(statuses)
    assert [final[j["job_id"]] for j in jobs] == ["delivered"] * 4
    calls = [j for _, j in driver.calls[before:]]
    mine = [j.mutation.mutation_id for j in calls if j.mutation.entity_key == key]
    assert mine == [j["mutation"]["mutation_id"] for j in jobs]  # v1, v2, v3, v4
    # Another entity's immediate job did not wait for the normal lane's backlog.
    ids = [j.job_id for j in calls]
    assert ids.index(elsewhere["job_id"]) < ids.index(jobs[1]["job_id"])
    normal, immediate = disps
    assert immediate.stats.held > 0 and normal.stats.held == 0
