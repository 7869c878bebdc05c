"""What a failing version guard costs: only the jobs it concerns, never an attempt for an outage.

The dispatcher runs on fakes (no broker, no database): a guard whose batch transaction fails
to commit, with one recording that cannot be written even alone; a guard whose database is
away for a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from psycopg import OperationalError

from pim_hub.services.dispatcher.app import Dispatcher
from tests.integration.test_dispatcher_helpers import recording_driver
from tests.unit.dispatcher.test_pump import _dispatcher, _submit, _Txn, _until_finished

POISON = "product:p3"


class _RecordingTxn(_Txn):
    def __init__(self, guard: _BrokenCommitGuard) -> None:
        self.guard = guard
        self.rows: list[Any] = []

    async def record(self, rows: list[Any]) -> None:
        self.rows.extend(rows)


class _BrokenCommitGuard:
    """A batch's COMMIT fails when it holds the poison record; each record alone commits,
    except the poison one."""

    def __init__(self) -> None:
        self.recorded: list[str] = []

    @contextlib.asynccontextmanager
    async def reading(
        self,
        integration_id: str,
        keys: list[str],
        job_ids: list[str],
        lane: Any = None,
        prevs: Any = None,
    ) -> AsyncIterator[tuple[_Txn, dict[str, Any], set[str]]]:
        txn = _RecordingTxn(self)
        yield txn, {}, set()
        if any(r.entity_key == POISON for r in txn.rows):
            raise ValueError("invalid input syntax for type timestamp with time zone")
        self.recorded += [r.entity_key for r in txn.rows]

    @contextlib.asynccontextmanager
    async def locked(self, integration_id: str, keys: list[str]) -> AsyncIterator[_Txn]:
        txn = _RecordingTxn(self)
        yield txn
        if any(r.entity_key == POISON for r in txn.rows):
            raise ValueError("invalid input syntax for type timestamp with time zone")
        self.recorded += [r.entity_key for r in txn.rows]

    async def register(self, jobs: list[Any]) -> None:
        pass


def test_one_bad_recording_retries_its_job_alone() -> None:
    driver = recording_driver("guard-poison")

    async def main() -> tuple[Dispatcher, _BrokenCommitGuard]:
        d = _dispatcher(driver, "i-poison", batch_size=50, linger_ms=0)
        guard = d._guard = _BrokenCommitGuard()  # type: ignore[assignment]
        _submit(d, "i-poison", range(8))
        await _until_finished(d, 8)
        for lane in d._lanes.values():
            lane.task.cancel()
        return d, guard

    d, guard = asyncio.run(main())
    assert d.stats.by_status == {"delivered": 7, "retrying": 1}
    assert sorted(guard.recorded) == sorted(f"product:p{i}" for i in range(8) if i != 3)
    assert len(driver.calls) == 8  # every job sent once: none sent again for another's fault


class _AwayGuard(_BrokenCommitGuard):
    """The database refuses the first few transactions (a restart), then answers."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    @contextlib.asynccontextmanager
    async def reading(
        self,
        integration_id: str,
        keys: list[str],
        job_ids: list[str],
        lane: Any = None,
        prevs: Any = None,
    ) -> AsyncIterator[tuple[_Txn, dict[str, Any], set[str]]]:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("terminating connection due to administrator command")
        txn = _RecordingTxn(self)
        yield txn, {}, set()
        self.recorded += [r.entity_key for r in txn.rows]


def test_a_database_restart_holds_the_batch_without_spending_an_attempt() -> None:
    driver = recording_driver("guard-away")

    async def main() -> Dispatcher:
        d = _dispatcher(driver, "i-away", batch_size=50, linger_ms=0, guard_retry_s=0.05)
        d._guard = _AwayGuard(failures=3)  # type: ignore[assignment]
        _submit(d, "i-away", range(5))
        await _until_finished(d, 5)
        for lane in d._lanes.values():
            lane.task.cancel()
        return d

    d = asyncio.run(main())
    assert d.stats.by_status == {"delivered": 5}  # no retry tier, no attempt spent
    assert [j.attempt for _, j in driver.calls] == [1] * 5
    assert d.stats.held >= 3
