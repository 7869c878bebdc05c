"""Per-entity order across lanes for a job its lane has not read yet, on the real broker and
PostgreSQL.

A creation waits on `normal`, unread (no normal dispatcher runs yet); the entity's price update
on `immediate` names it (header pimhub.prev-job, as fan-out and replays write it). The immediate
dispatcher holds the update until the creation is delivered, while another entity's immediate
job goes at once; with a short order hold and no normal dispatcher, the update goes once the
hold has passed, counted and logged.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from pim_hub.drivers.base import DeliveryResult
from pim_hub.runtime import metrics
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import ordering
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


def _chained(hub_settings: Settings, database_url: str, unique: str) -> tuple[Any, ...]:
    driver, integ = _setup(hub_settings, database_url, unique)
    key, other = f"product:{unique}", f"product:other{unique}"
    create = job_record(
        integ, driver.key, "normal", key, [change("name", "n")], version(1), "create"
    )
    price = job_record(integ, driver.key, "immediate", key, [change("price", 3)], version(2))
    elsewhere = job_record(integ, driver.key, "immediate", other, [change("price", 1)], version(1))
    made = int(time.time() * 1000)
    headers = {
        price["job_id"]: [(ordering.PREV_JOB, ordering.prev_job_value(create["job_id"], made))]
    }
    return driver, integ, key, create, price, elsewhere, headers


def _release(
    hub_settings: Settings, driver: Any, watch: Any, create: Any, price: Any
) -> dict[str, str]:
    """Start the normal lane's dispatcher; the final statuses once both jobs have one."""
    with dispatching(hub_settings, driver, "normal", order_hold_s=600.0):
        statuses = watch.wait(
            lambda s: {create["job_id"], price["job_id"]} <= {x["job_id"] for x in s},
            120,
            "the creation and the update",
        )
    watch.close()
    return final_statuses(statuses)


def test_a_job_waits_for_the_unread_job_it_names(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ, key, create, price, elsewhere, headers = _chained(
        hub_settings, database_url, unique
    )
    watch = status_watcher(hub_settings, integ)
    # The creation is on `normal`, where no dispatcher reads yet.
    produce_jobs(hub_settings, [create])
    with dispatching(hub_settings, driver, "immediate") as (immediate,):
        produce_jobs(hub_settings, [price, elsewhere], headers)
        watch.wait(
            lambda s: elsewhere["job_id"] in {x["job_id"] for x in s}, 120, "the other entity"
        )
        time.sleep(2.0)  # the update had every chance to go; it must still wait
        assert [j.job_id for _, j in driver.calls] == [elsewhere["job_id"]]
        assert immediate.stats.held > 0
        final = _release(hub_settings, driver, watch, create, price)
    assert final[create["job_id"]] == final[price["job_id"]] == "delivered"
    mine = [j.job_id for _, j in driver.calls if j.mutation.entity_key == key]
    assert mine == [create["job_id"], price["job_id"]]
    # A delivered job is known by delivered_jobs: it costs no row in the settled list.
    with psycopg.connect(database_url) as conn:
        settled = conn.execute(
            "SELECT count(*) FROM dispatch_settled WHERE integration_id = %s", (integ,)
        ).fetchone()
    assert settled == (0,)


def test_a_predecessor_that_failed_for_good_releases_the_job_after_it(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ, key, create, price, _, headers = _chained(hub_settings, database_url, unique)
    # The target refuses the creation for good: it ends dead, and the update may go.
    driver.script[key] = [DeliveryResult.permanent("refused", kind="rejected")]
    watch = status_watcher(hub_settings, integ)
    produce_jobs(hub_settings, [create])
    with dispatching(hub_settings, driver, "immediate", order_hold_s=600.0) as (immediate,):
        produce_jobs(hub_settings, [price], headers)
        deadline = time.monotonic() + 60
        while immediate.stats.held == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert immediate.stats.held > 0 and driver.calls == []  # waits for the creation
        final = _release(hub_settings, driver, watch, create, price)
    assert final[create["job_id"]] == "dead" and final[price["job_id"]] == "delivered"
    assert [j.job_id for _, j in driver.calls] == [create["job_id"], price["job_id"]]
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT 1 FROM dispatch_settled WHERE integration_id = %s AND job_id = %s",
            (integ, create["job_id"]),
        ).fetchone()
    assert row is not None  # what released the update


def test_the_wait_ends_after_the_order_hold(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ, _key, create, price, _, headers = _chained(hub_settings, database_url, unique)
    given_up = metrics.DISPATCH_ORDER_GIVEN_UP.labels(driver.key, integ, "immediate")
    before = given_up._value.get()
    watch = status_watcher(hub_settings, integ)
    produce_jobs(hub_settings, [create])  # never read: no normal dispatcher in this test
    started = time.monotonic()
    with dispatching(hub_settings, driver, "immediate", order_hold_s=3.0):
        produce_jobs(hub_settings, [price], headers)
        statuses = watch.wait(
            lambda s: price["job_id"] in {x["job_id"] for x in s}, 120, "the update"
        )
    waited = time.monotonic() - started
    watch.close()
    assert final_statuses(statuses)[price["job_id"]] == "delivered"
    assert waited >= 3.0  # held for the whole hold first
    assert given_up._value.get() == before + 1
    assert [j.job_id for _, j in driver.calls] == [price["job_id"]]


def test_a_job_naming_a_settled_job_goes_at_once(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ, _key, create, price, _, headers = _chained(hub_settings, database_url, unique)
    watch = status_watcher(hub_settings, integ)
    with dispatching(hub_settings, driver, "normal", "immediate", order_hold_s=600.0) as disps:
        produce_jobs(hub_settings, [create])
        watch.wait(lambda s: create["job_id"] in {x["job_id"] for x in s}, 120, "the creation")
        produce_jobs(hub_settings, [price], headers)
        watch.wait(lambda s: price["job_id"] in {x["job_id"] for x in s}, 60, "the update")
    watch.close()
    assert disps[1].stats.held == 0
    assert [j.job_id for _, j in driver.calls] == [create["job_id"], price["job_id"]]
