"""The circuit and concurrency of each lane, written to PostgreSQL for `hub integrations show`.

Every dispatcher process keeps its own breaker and concurrency limit per integration (see
core/breaker.py and core/throttle.py); metrics show them per process, but the CLI has no
Prometheus to ask. So each process writes one row per lane to `dispatcher_circuits`
(migration 0020): at once when a state or limit changes, and every few seconds anyway (so
`updated_at` says the process is alive); it deletes its rows when it stops. A failed write is
logged and tried again at the next change or tick: it never holds delivery up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pim_hub.services.dispatcher.work import logger

#: How often the rows are rewritten when nothing changes.
REFRESH_S = 5.0

UPSERT = """
INSERT INTO dispatcher_circuits AS c (integration_id, driver, priority, process, state,
    opened_at, last_probe, next_probe, concurrency, concurrency_max, throttled_until, updated_at)
SELECT r.integration_id, %(driver)s, %(priority)s, %(process)s, r.state, r.opened_at,
    r.last_probe, r.next_probe, r.concurrency, r.concurrency_max, r.throttled_until, now()
FROM jsonb_to_recordset(%(rows)s) AS r(integration_id text, state text, opened_at timestamptz,
    last_probe timestamptz, next_probe timestamptz, concurrency integer,
    concurrency_max integer, throttled_until timestamptz)
ON CONFLICT (integration_id, driver, priority, process) DO UPDATE SET
    state = EXCLUDED.state, opened_at = EXCLUDED.opened_at, last_probe = EXCLUDED.last_probe,
    next_probe = EXCLUDED.next_probe, concurrency = EXCLUDED.concurrency,
    concurrency_max = EXCLUDED.concurrency_max, throttled_until = EXCLUDED.throttled_until,
    updated_at = now()
"""
DELETE_MINE = """
DELETE FROM dispatcher_circuits WHERE driver = %(driver)s AND priority = %(priority)s
    AND process = %(process)s
"""
#: Rows of processes that died without deleting theirs.
SWEEP = "DELETE FROM dispatcher_circuits WHERE updated_at < now() - interval '1 day'"


class LaneView(Protocol):
    """What the reporter reads of a lane (lane._Lane)."""

    integration_id: str

    def circuit_row(self, wall: Callable[[float | None], str | None]) -> dict[str, Any]: ...


def process_name() -> str:
    """This process, as the rows name it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def wall_clock(mono: float | None) -> str | None:
    """A monotonic instant as an ISO wall-clock time (None stays None)."""
    if mono is None or mono in (float("inf"), float("-inf")):
        return None
    return datetime.fromtimestamp(time.time() - (time.monotonic() - mono), UTC).isoformat()


class CircuitReporter:
    """Writes the lanes' circuits of one dispatcher (driver and priority) to PostgreSQL."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        driver: str,
        priority: str,
        lanes: Callable[[], Iterable[LaneView]],
        changed: asyncio.Event,
    ) -> None:
        self.pool = pool
        self.lanes = lanes
        self.changed = changed
        self.params = {"driver": driver, "priority": priority, "process": process_name()}
        self.failing = False

    async def run(self) -> None:
        """Write now, then on every change and every REFRESH_S, until cancelled."""
        with contextlib.suppress(Exception):
            async with self.pool.connection() as conn:
                await conn.execute(SWEEP)
        while True:
            await self.write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), REFRESH_S)
            await asyncio.sleep(0.2)  # a burst of changes: one write

    async def write(self) -> None:
        """The lanes' rows now (a failure is logged once until a write succeeds)."""
        self.changed.clear()
        rows = [lane.circuit_row(wall_clock) for lane in self.lanes()]
        if not rows:
            return
        try:
            async with self.pool.connection() as conn:
                await conn.execute(UPSERT, {**self.params, "rows": Jsonb(rows)})
            self.failing = False
        except Exception as exc:
            if not self.failing:
                logger.warning(
                    "could not write the circuits' state; `hub integrations show` lags",
                    extra={"error": f"{exc!r}"[:500]},
                )
            self.failing = True

    async def close(self) -> None:
        """This dispatcher's rows go (best effort: else they are swept later)."""
        with contextlib.suppress(Exception):
            async with self.pool.connection() as conn:
                await conn.execute(DELETE_MINE, self.params)
