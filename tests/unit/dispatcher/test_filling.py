"""Adaptive batch filling: the decision (core/filling.py) and a batching lane's pump."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import pytest

from pim_hub.drivers.base import DeliveryResult, IntegrationContext
from pim_hub.schemas.events import Job
from pim_hub.services.dispatcher.app import Dispatcher
from pim_hub.services.dispatcher.core.filling import keep_filling
from tests.integration.test_dispatcher_helpers import RecordingDriver
from tests.unit.dispatcher.test_pump import _dispatcher, _submit, _until_finished


def _decide(**given: Any) -> bool:
    args: dict[str, Any] = {
        "ready": 10,
        "want": 50,
        "running": 1,
        "waited_s": 0.05,
        "fill_s": 0.25,
        "window_s": 0.02,
        "arrived": 0,
        "backlog": False,
    }
    args.update(given)
    return keep_filling(**args)


@pytest.mark.parametrize(
    ("given", "waits"),
    [
        # Within the first linger period a busy lane waits, as it always did.
        ({"waited_s": 0.01}, True),
        # Then it waits on only while jobs come fast enough to fill the batch in time:
        # 10 jobs in 50 ms is 200/s, 40 more in the 200 ms left.
        ({"arrived": 10}, True),
        ({"arrived": 9}, False),
        # A lone job with nothing coming goes after the first period.
        ({"ready": 1, "arrived": 0}, False),
        # After a full batch (a backlog) it waits for room to bring more.
        ({"backlog": True}, True),
        # Never past the bound, never for an idle lane, never once the batch is full.
        ({"backlog": True, "waited_s": 0.25}, False),
        ({"backlog": True, "running": 0}, False),
        ({"waited_s": 0.01, "running": 0}, False),
        ({"backlog": True, "ready": 50}, False),
    ],
)
def test_the_decision_to_wait_for_a_fuller_batch(given: dict[str, Any], waits: bool) -> None:
    assert _decide(**given) is waits


class _BatchingDriver(RecordingDriver):
    """Records the size of each `handle_batch` call; each call takes `delay_s`."""

    sizes: ClassVar[list[tuple[float, int]]]

    async def handle_batch(
        self, jobs: list[Job], context: IntegrationContext
    ) -> list[DeliveryResult]:
        cls = type(self)
        cls.sizes.append((time.monotonic(), len(jobs)))
        await asyncio.sleep(cls.delay_s)
        return [DeliveryResult.delivered() for _ in jobs]


def _batching_driver(key: str, delay_s: float) -> type[_BatchingDriver]:
    return type(
        f"Batching_{key}",
        (_BatchingDriver,),
        {"key": key, "script": {}, "calls": [], "active": {}, "sizes": [], "delay_s": delay_s},
    )


def _batching(driver: type[_BatchingDriver], integration: str, **options: Any) -> Dispatcher:
    d = _dispatcher(driver, integration, **options)
    d._bound[integration].batching = True
    return d


def _stop(d: Dispatcher) -> None:
    for lane in d._lanes.values():
        lane.task.cancel()


def test_a_steady_stream_on_a_busy_lane_goes_out_in_full_batches() -> None:
    # 10 jobs every 20 ms (500/s) while calls take 0.3 s and 8 may run at once: sent as
    # they come, each batch took what one linger period brought (about 10).
    driver = _batching_driver("fill-stream", 0.3)

    async def main() -> None:
        d = _batching(
            driver, "i-stream", batch_size=50, linger_ms=20, batch_fill_ms=250, max_in_flight=8
        )
        for start in range(0, 600, 10):
            _submit(d, "i-stream", range(start, start + 10))
            await asyncio.sleep(0.02)
        await _until_finished(d, 600)
        _stop(d)

    asyncio.run(main())
    sizes = [n for _, n in driver.sizes]
    assert sum(sizes) == 600
    # The first goes at once (an idle lane); then batches fill up to 50 (the last may not).
    assert sizes[0] <= 10
    assert len(sizes) <= 16, sizes
    assert sum(1 for n in sizes if n == 50) >= 10, sizes


def test_after_a_full_batch_the_rest_waits_for_the_next_jobs() -> None:
    # A backlog: 15 ready, batches of 10. The 5 left wait for the 5 read 100 ms later
    # instead of going out alone after one linger period.
    driver = _batching_driver("fill-backlog", 0.3)

    async def main() -> None:
        d = _batching(
            driver, "i-backlog", batch_size=10, linger_ms=20, batch_fill_ms=250, max_in_flight=8
        )
        _submit(d, "i-backlog", range(15))
        await asyncio.sleep(0.1)
        _submit(d, "i-backlog", range(15, 20))
        await _until_finished(d, 20)
        _stop(d)

    asyncio.run(main())
    assert [n for _, n in driver.sizes] == [10, 10]


def test_a_lone_job_goes_at_once_on_an_idle_lane_and_after_one_linger_on_a_busy_one() -> None:
    # The bound is long (1 s): jobs that come one by one (a live edit now and then) must
    # not wait for it, busy lane or not.
    driver = _batching_driver("fill-lone", 0.5)

    async def main() -> list[float]:
        d = _batching(
            driver, "i-lone", batch_size=50, linger_ms=20, batch_fill_ms=1000, max_in_flight=8
        )
        waits = []
        for off in range(4):
            submitted = time.monotonic()
            seen = len(driver.sizes)
            _submit(d, "i-lone", range(off, off + 1))
            while len(driver.sizes) == seen:
                await asyncio.sleep(0.001)
            waits.append(driver.sizes[-1][0] - submitted)
            await asyncio.sleep(0.1)  # the first call still runs: the lane is busy
        await _until_finished(d, 4)
        _stop(d)
        return waits

    waits = asyncio.run(main())
    assert [n for _, n in driver.sizes] == [1, 1, 1, 1]
    assert waits[0] < 0.015  # idle lane: at once
    # Busy lane: one linger period (20 ms) to see that nothing else is coming.
    assert max(waits[1:]) < 0.1, waits


def test_a_waiting_batch_goes_as_soon_as_the_lane_is_idle() -> None:
    # The lane's only call ends while 5 jobs wait after a full batch: the target has
    # nothing to do, so they go then, not at the end of the (long) bound.
    driver = _batching_driver("fill-idle", 0.1)

    async def main() -> float:
        d = _batching(
            driver, "i-idle", batch_size=10, linger_ms=20, batch_fill_ms=2000, max_in_flight=8
        )
        started = time.monotonic()
        _submit(d, "i-idle", range(15))
        await _until_finished(d, 15)
        _stop(d)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert [n for _, n in driver.sizes] == [10, 5]
    assert took < 0.5
