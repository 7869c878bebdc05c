"""A whole local hub in one object: broker, database, topics and services (demo and tests)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from pim_hub.devstack import embedded as runtime
from pim_hub.devstack.supervisor import Service, Supervisor
from pim_hub.runtime import db
from pim_hub.runtime.kafka import apply_topics, make_producer
from pim_hub.runtime.outbound import LOCAL_ALLOW
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde

T = TypeVar("T")


class Timeout(AssertionError):
    """A condition did not come true in time."""


@dataclass
class Stack:
    """Running broker + database + services, with helpers to feed and observe them."""

    rt: runtime.Runtime
    database_url: str
    settings: Settings
    supervisor: Supervisor
    serde: Serde

    @property
    def env(self) -> dict[str, str]:
        """Environment for hub processes of this stack."""
        return self.supervisor.env

    def start_mutator(self, name: str = "mutator") -> Service:
        """Start a mutator worker."""
        return self.supervisor.start(name, "mutator")

    def start_dispatcher(self, driver: str, priority: str, name: str | None = None) -> Service:
        """Start a dispatcher of one driver and priority."""
        return self.supervisor.start(
            name or f"dispatcher-{driver}-{priority}",
            "dispatcher",
            "--driver",
            driver,
            "--priority",
            priority,
        )

    def start_projector(self) -> Service:
        """Start the delivery-status projector."""
        return self.supervisor.start("projector", "projector")

    def producer(self) -> Any:
        """An idempotent producer on this broker."""
        return make_producer(self.settings)

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of a query on the stack's database."""
        return query(self.database_url, sql, *params)

    def wait_for(self, check: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
        """Poll check() until it returns something truthy; fail early if a service died."""
        return wait_for(check, timeout=timeout, what=what, supervisor=self.supervisor)


def query(database_url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of one query, as dicts."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def wait_for(
    check: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.25,
    what: str = "condition",
    supervisor: Supervisor | None = None,
) -> T:
    """Poll check() until it returns something truthy; raise Timeout with the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        if supervisor is not None:
            supervisor.check()
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise Timeout(f"{what} not reached in {timeout:.0f}s (last: {last!r})")


@contextlib.contextmanager
def local_stack(
    database_name: str,
    log_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Start (or find) a broker and PostgreSQL, make a fresh database, topics and a supervisor.

    Everything started here is stopped on exit, on Ctrl-C and on errors.
    """
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="pimhub-logs-"))
    with runtime.embedded_runtime() as rt:
        url = runtime.create_database(rt.database.url, database_name)
        env = {
            "HUB_KAFKA_BOOTSTRAP": rt.broker.bootstrap,
            "HUB_DATABASE_URL": url,
            "HUB_LOG_LEVEL": "INFO",
            "HUB_MUTATOR_DATA_DIR": str(log_dir / "mutator-data"),
            # The sandboxes and test receivers listen on this machine: opened on purpose.
            "HUB_OUTBOUND_ALLOW": LOCAL_ALLOW,
            **(extra_env or {}),
        }
        settings = settings_from_env(env)
        db.migrate(url)
        apply_topics(settings)
        supervisor = Supervisor(env=env, log_dir=log_dir)
        stack = Stack(rt, url, settings, supervisor, Serde(settings.registry_config()))
        try:
            yield stack
        finally:
            supervisor.stop_all()
            with contextlib.suppress(Exception):
                runtime.drop_database(rt.database.url, database_name)


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings as a child process with env would read them."""
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def topic_names() -> list[str]:
    """Topics every stack has (for tests that read them)."""
    return [topics.SNAPSHOTS, topics.MUTATIONS, topics.DELIVERY_STATUS]
