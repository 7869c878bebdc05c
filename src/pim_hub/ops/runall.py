"""`hub run`: every service a small installation needs, in one supervised command.

It starts the enricher, the mutator, both projectors (and the webhook receiver when asked)
plus exactly the dispatchers the enabled integrations need (one per driver and priority their
jobs can reach, see `pim_hub.ops.dispatchers`), each as its own process (`python -m pim_hub
...`), restarts one that dies (with a growing pause), follows the registry (a new integration
gets its dispatchers within `refresh_s`, a removed one's stop), reports a dispatcher that is
needed while jobs wait and none consumes them, and on SIGINT/SIGTERM stops them all.

Each child logs its own `service starting` / `service ready` lines to the shared stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pim_hub.ops.dispatchers import DispatcherNeed, coverage, needed_dispatchers
from pim_hub.runtime.settings import Settings

logger = logging.getLogger(__name__)

#: The services besides the dispatchers: name -> `hub` arguments.
BASE_SERVICES: dict[str, list[str]] = {
    "enricher": ["ingest", "enrich"],
    "mutator": ["mutator"],
    "projector": ["projector"],
    "entities": ["entities", "project"],
}
#: The optional webhook receiver (Akeneo Events API / Event Platform over HTTP).
WEB_SERVICE = "web"
#: Longest pause before a crashed service is started again.
MAX_BACKOFF_S = 60.0


@dataclass
class Child:
    """One supervised process."""

    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0


@dataclass
class RunAll:
    """Keeps the wanted set of services running until stopped."""

    settings: Settings
    services: dict[str, list[str]]
    refresh_s: float = 10.0
    stop_timeout_s: float = 30.0
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    #: how a child is started (tests and the CLI use `python -m pim_hub`)
    command: Sequence[str] = field(default_factory=lambda: [sys.executable, "-m", "pim_hub"])
    children: dict[str, Child] = field(default_factory=dict)
    needs: list[DispatcherNeed] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _reported: set[str] = field(default_factory=set)

    def wanted(self) -> dict[str, list[str]]:
        """The services to run now: the base ones and the dispatchers the registry needs."""
        from pim_hub.registry.queue_map import queue_map_from_settings
        from pim_hub.registry.store import list_integrations

        assert self.settings.database_url
        try:
            self.needs = needed_dispatchers(
                list_integrations(self.settings.database_url),
                queue_map_from_settings(self.settings),
            )
        except Exception as exc:  # the database is away: keep what runs, try again later
            logger.warning("cannot read the integrations", extra={"error": str(exc)})
        wanted = dict(self.services)
        for need in self.needs:
            wanted[f"dispatcher-{need.driver}-{need.priority}"] = [
                "dispatcher",
                "--driver",
                need.driver,
                "--priority",
                need.priority,
            ]
        return wanted

    def _start(self, child: Child) -> None:
        # A session of its own: Ctrl-C reaches this supervisor only, which then stops the
        # children in order instead of racing their exits against restarts.
        child.proc = subprocess.Popen(
            [*self.command, *child.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        logger.info(
            "service started",
            extra={"service": child.name, "pid": child.proc.pid, "command": " ".join(child.args)},
        )

    def _terminate(self, children: Sequence[Child]) -> None:
        """SIGTERM, wait up to stop_timeout_s, then SIGKILL what is left."""
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning(
                    "service did not stop in time: killed", extra={"service": child.name}
                )
                child.proc.kill()
                child.proc.wait()
            logger.info(
                "service stopped", extra={"service": child.name, "exit_code": child.proc.returncode}
            )

    def reconcile(self, wanted: dict[str, list[str]]) -> None:
        """Start what is wanted and not running, restart what died, stop what is unwanted."""
        now = time.monotonic()
        gone = [c for name, c in self.children.items() if name not in wanted]
        if gone:
            self._terminate(gone)
            for child in gone:
                del self.children[child.name]
        for name, args in wanted.items():
            child = self.children.setdefault(name, Child(name, args))
            if child.proc is not None and child.proc.poll() is None:
                continue
            if child.proc is not None and child.next_start == 0.0:
                code = child.proc.returncode
                # A child that ran a while gets a fresh start; one that dies at once waits
                # longer each time (a missing setting should not spin the machine).
                child.restarts = 0 if now - child.started_at > MAX_BACKOFF_S else child.restarts + 1
                pause = min(MAX_BACKOFF_S, 2.0**child.restarts)
                child.next_start = now + pause
                logger.error(
                    "service exited; starting it again",
                    extra={"service": name, "exit_code": code, "restart_in_s": pause},
                )
            if now >= child.next_start:
                child.next_start = 0.0
                self._start(child)

    def report_missing(self) -> list[str]:
        """Groups that are needed while jobs wait and none consumes them (logged once each)."""
        missing = [c for c in coverage(self.settings, self.needs) if c.missing]
        for row in missing:
            if row.need.group not in self._reported:
                logger.warning(
                    "jobs wait on a topic no dispatcher of their driver consumes",
                    extra={
                        "group": row.need.group,
                        "topic": row.need.topic,
                        "messages": row.uncovered,
                        "integrations": ",".join(row.need.integrations),
                    },
                )
        self._reported = {row.need.group for row in missing}
        return [row.need.group for row in missing]

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self._stop.set()

    def run(self, on_cycle: Callable[[], None] | None = None) -> None:
        """Supervise until stop(), then stop every child."""
        next_refresh = 0.0
        wanted: dict[str, list[str]] = {}
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_refresh:
                    wanted = self.wanted()
                    next_refresh = now + self.refresh_s
                    self.reconcile(wanted)
                    try:
                        self.report_missing()
                    except Exception as exc:  # a report: the broker may be restarting
                        logger.warning("cannot check the dispatchers", extra={"error": str(exc)})
                else:
                    self.reconcile(wanted)
                if on_cycle is not None:
                    on_cycle()
                self._stop.wait(1.0)
        finally:
            logger.info("stopping every service", extra={"services": len(self.children)})
            self._terminate(list(self.children.values()))
