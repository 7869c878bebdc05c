"""The console's actions, each through the same code as its CLI command, each audited.

Redrive is `pim_hub.ops.dead.redrive`, replay and resync are `pim_hub.ops.replay.replay` and
`pim_hub.ops.resync.resync`, enable/disable is `Registry.set_enabled`: the console adds the
audit log and the background runs with progress, never a second implementation.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pim_hub.console.auth import Identity
from pim_hub.drivers.discovery import DriverCatalogue
from pim_hub.ops.dead import RedriveReport, redrive
from pim_hub.ops.replay import EntityFilter, ReplayOptions, RunReport, replay
from pim_hub.ops.resync import resync
from pim_hub.registry.changes import KafkaChangePublisher, RegistryChange
from pim_hub.registry.queue_map import queue_map_from_settings
from pim_hub.registry.service import Registry
from pim_hub.runtime.settings import Settings

logger = logging.getLogger(__name__)


def audit(
    url: str,
    who: Identity,
    action: str,
    target: str,
    outcome: str,
    jobs: int | None = None,
    detail: dict[str, Any] | None = None,
    *,
    role: str | None = None,
) -> None:
    """Append one entry to the audit log (`role` overrides the identity's: `anonymous`)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO console_audit (actor, role, action, target, jobs, outcome, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (who.name, role or who.role, action, target, jobs, outcome, Jsonb(detail or {})),
        )


def audit_sign_in(url: str, name: str, address: str, outcome: str, detail: dict[str, Any]) -> None:
    """A sign-in attempt worth keeping (refused by the rate limit): the name tried, role
    `anonymous` (nobody is signed in), the client address in the detail."""
    audit(
        url,
        Identity(name[:100] or "(no name)", "viewer"),
        "sign-in",
        name[:100],
        outcome,
        None,
        {"address": address, **detail},
        role="anonymous",
    )


def redrive_jobs(
    settings: Settings, who: Identity, job_ids: list[str], target: str
) -> RedriveReport:
    """Redrive some dead jobs (`hub dead redrive --job ...`), audited with the count sent."""
    url = settings.require_database()
    try:
        report = redrive(settings, job_ids=job_ids)
    except Exception as exc:
        audit(url, who, "redrive", target, "failed", 0, {"asked": len(job_ids), "error": str(exc)})
        raise
    audit(
        url,
        who,
        "redrive",
        target,
        "ok",
        len(report.redriven),
        {
            "asked": len(job_ids),
            "already": report.already,
            "missing": len(report.missing),
            "job_ids": report.redriven[:100],
        },
    )
    return report


def registry_for(settings: Settings, catalogue: DriverCatalogue) -> Registry:
    """The registry the CLI's `hub integrations` uses: validated, published changes."""
    levels = queue_map_from_settings(settings).levels
    return Registry(settings.require_database(), catalogue, KafkaChangePublisher(settings), levels)


def set_enabled(
    settings: Settings,
    catalogue: DriverCatalogue,
    who: Identity,
    integration_id: str,
    enabled: bool,
) -> RegistryChange:
    """`hub integrations enable|disable ID`, audited."""
    action = "enable" if enabled else "disable"
    url = settings.require_database()
    try:
        change = registry_for(settings, catalogue).set_enabled(integration_id, enabled)
    except Exception as exc:
        audit(url, who, action, integration_id, "failed", None, {"error": str(exc)})
        raise
    audit(url, who, action, integration_id, "ok", None, {"change": change.line()})
    return change


@dataclass
class Run:
    """A replay or resync running in the background, with its progress."""

    run_id: str
    kind: str
    who: Identity
    target: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    total: int = 0
    done: int = 0
    state: str = "running"  # running, done, failed
    report: RunReport | None = None
    error: str | None = None

    def start(self, total: int) -> None:
        """The number of offsets or entities to pass over (the Progress protocol)."""
        self.total = total

    def advance(self, n: int) -> None:
        """n more passed over."""
        self.done += n

    def as_json(self) -> dict[str, Any]:
        """For the page's progress poll."""
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "jobs": self.report.total_jobs if self.report else None,
            "lines": self.report.lines() if self.report else [],
            "error": self.error,
        }


class Runs:
    """Background replay and resync runs of this console process (the newest KEEP of them:
    their outcome stays in the audit log)."""

    KEEP = 100

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def get(self, run_id: str) -> Run | None:
        """A run by id."""
        with self._lock:
            return self._runs.get(run_id)

    def start(
        self,
        settings: Settings,
        kind: str,
        who: Identity,
        target: str,
        work: Callable[[Run], RunReport],
        detail: dict[str, Any],
    ) -> Run:
        """Run `work` in a thread; audit it when it ends (jobs sent, or the failure)."""
        run = Run(uuid.uuid4().hex, kind, who, target)
        with self._lock:
            self._runs[run.run_id] = run
            finished = [r for r in self._runs.values() if r.state != "running"]
            for old in finished[: max(0, len(self._runs) - self.KEEP)]:
                del self._runs[old.run_id]
        url = settings.require_database()

        def record(outcome: str, jobs: int, extra: dict[str, Any]) -> None:
            try:
                audit(url, who, kind, target, outcome, jobs, {**detail, **extra})
            except Exception as exc:  # the run's outcome stays on its page and in the log
                logger.error("console audit failed", extra={"run": run.run_id, "error": str(exc)})
                run.error = f"{run.error or ''} (not audited: {exc})".strip()

        def body() -> None:
            try:
                run.report = work(run)
                run.state = "done"
            except Exception as exc:  # shown on the page and audited; the console goes on
                logger.warning("console run failed", extra={"run": run.run_id, "error": str(exc)})
                run.state, run.error = "failed", str(exc)
                record("failed", 0, {"error": str(exc)})
                return
            report = run.report
            record(
                "ok", report.total_jobs, {"run_id": report.run_id, "invalid": len(report.invalid)}
            )

        threading.Thread(target=body, name=f"console-{kind}-{run.run_id[:8]}", daemon=True).start()
        return run


def replay_options(
    integrations: list[str],
    mode: str,
    since: datetime | None,
    until: datetime | None,
    entity_types: list[str],
    key: str | None,
    dry_run: bool,
    rate: float,
) -> ReplayOptions:
    """The options `hub replay` builds from its flags."""
    return ReplayOptions(
        integrations=tuple(integrations),
        mode=mode,  # type: ignore[arg-type]
        since=since,
        until=until,
        filter=EntityFilter(frozenset(entity_types) if entity_types else None, key or None),
        dry_run=dry_run,
        rate=rate,
    )


def run_replay(settings: Settings, options: ReplayOptions, run: Run | None = None) -> RunReport:
    """`hub replay` (a dry run counts the jobs only)."""
    return replay(settings, options, run)


def run_resync(
    settings: Settings,
    integration: str,
    flt: EntityFilter,
    dry_run: bool,
    rate: float,
    run: Run | None = None,
) -> RunReport:
    """`hub resync --integration X` (a dry run counts the jobs only)."""
    return resync(settings, integration, flt, dry_run=dry_run, rate=rate, progress=run)
