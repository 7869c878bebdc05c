"""A lane's pump and the per-batch metrics, on the real dispatcher with its I/O faked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from confluent_kafka import TopicPartition

from pim_hub.drivers.base import IntegrationContext
from pim_hub.registry.limits import RateLimit
from pim_hub.registry.model import Integration
from pim_hub.runtime import metrics
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.events import Job
from pim_hub.services.dispatcher.app import Dispatcher, _Bound, _Lane, _Work
from pim_hub.services.dispatcher.core.offsets import PartitionOffsets
from pim_hub.services.dispatcher.settings import DispatcherOptions
from tests.integration.test_dispatcher_helpers import (
    RecordingConfig,
    RecordingDriver,
    catalogue_with,
    change,
    job_record,
    recording_driver,
    version,
)

TP = ("hub.jobs.normal", 0)


class _Txn:
    pending_older: dict[str, Any] = {}
    settled: set[str] = set()

    async def record(self, rows: list[Any]) -> None:
        pass

    def settle(self, jobs: list[Any], unrecorded: Any = None) -> None:
        pass


class _Guard:
    """Nothing delivered before; nothing to lock against."""

    @contextlib.asynccontextmanager
    async def reading(
        self,
        integration_id: str,
        keys: list[str],
        job_ids: list[str],
        lane: Any = None,
        prevs: Any = None,
    ) -> AsyncIterator[tuple[_Txn, dict[str, Any], set[str]]]:
        yield _Txn(), {}, set()

    async def register(self, jobs: list[Any]) -> None:
        pass

    async def purge_settled(self) -> None:
        pass


class _Producer:
    """Acknowledges every write at once."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    def produce(self, topic: str, value: bytes, key: Any, headers: Any, on_delivery: Any) -> None:
        self.topics.append(topic)
        on_delivery(None, None)


class _AsyncProducer:
    def __init__(self) -> None:
        self.producer = _Producer()


def _dispatcher(driver: type[RecordingDriver], integration: str, **options: Any) -> Dispatcher:
    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    opts = DispatcherOptions.from_settings(settings, **options)
    d = Dispatcher(settings, driver.key, "normal", catalogue_with(driver), opts)
    d._loop = asyncio.get_running_loop()
    d._loop_thread = threading.get_ident()
    d._producer = _AsyncProducer()  # type: ignore[assignment]
    d._guard = _Guard()  # type: ignore[assignment]
    d._guard_free = asyncio.Semaphore(d.guard_slots)
    d._parts[TP] = PartitionOffsets()
    context = IntegrationContext(integration, RecordingConfig(), None, None, logging.getLogger("t"))  # type: ignore[arg-type]
    d._bound[integration] = _Bound(
        Integration(integration, integration, driver.key, True, {}, None, {}),
        driver(),
        context,
        RateLimit(None, opts.max_in_flight, 1),
    )
    return d


def _submit(d: Dispatcher, integration: str, offsets: range) -> None:
    key = d.driver_key
    lane = d._lanes.get(integration)
    if lane is None:
        lane = d._lanes[integration] = _Lane(d, integration)
    for off in offsets:
        record = job_record(
            integration,
            key,
            "normal",
            f"product:p{off}",
            [change("name", off)],
            version(off),
        )
        d._parts[TP].take(off, 100)
        lane.submit(_Work(TP, off, b"k", Job.model_validate(record)))


async def _until_finished(d: Dispatcher, n: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while d.stats.finished < n:
        assert time.monotonic() < deadline, f"{d.stats.finished} of {n} finished"
        await asyncio.sleep(0.005)


def test_a_short_backlog_goes_out_after_one_linger_not_one_batch_per_linger() -> None:
    driver = recording_driver("pump-linger")
    driver.delay_s = 0.01

    async def main() -> list[float]:
        d = _dispatcher(driver, "i-linger", linger_ms=200, batch_size=50, max_in_flight=8)
        _submit(d, "i-linger", range(1))  # an idle lane sends at once: one batch running
        await asyncio.sleep(0.01)
        _submit(d, "i-linger", range(1, 32))  # 31 more while it runs: fewer than a batch
        await _until_finished(d, 32)
        for lane in d._lanes.values():
            lane.task.cancel()
        return [at for at, job in driver.calls if job.mutation.entity_key != "product:p0"]

    starts = asyncio.run(main())
    assert len(starts) == 31
    # At most one linger (200 ms) holds them back: then they are spread over the free
    # slots and start as fast as the 8 request slots allow. One batch of 4 per linger
    # period would have spread them over more than a second.
    assert max(starts) - min(starts) < 0.5


def test_jobs_are_counted_per_job_and_delivery_time_once_per_batch() -> None:
    integration = "i-metrics"
    driver = recording_driver("pump-metrics")
    labels = (driver.key, integration, "normal")
    jobs = metrics.DISPATCH_JOBS.labels(*labels, "delivered")
    seconds = metrics.DISPATCH_SECONDS.labels(*labels)

    def observed() -> tuple[float, float]:
        count = next(
            s.value for m in seconds.collect() for s in m.samples if s.name.endswith("_count")
        )
        return jobs._value.get(), count

    async def main() -> Dispatcher:
        d = _dispatcher(driver, integration, linger_ms=0, batch_size=10, max_in_flight=1)
        _submit(d, integration, range(30))
        await _until_finished(d, 30)
        for lane in d._lanes.values():
            lane.task.cancel()
        return d

    jobs_before, batches_before = observed()
    d = asyncio.run(main())
    jobs_after, batches_after = observed()
    assert jobs_after - jobs_before == 30
    assert d.stats.driver_calls == batches_after - batches_before
    assert 3 <= d.stats.driver_calls < 30
    # Every job's status went out, and its offset is finished.
    producer = d._producer.producer
    assert isinstance(producer, _Producer)
    assert producer.topics.count("hub.delivery-status") == 30
    assert d._parts[TP].in_flight() == 0


class _CountingGuard(_Guard):
    """Counts the locks its open transactions hold, and the biggest batch."""

    def __init__(self) -> None:
        self.held = self.peak = self.biggest = 0

    @contextlib.asynccontextmanager
    async def reading(
        self,
        integration_id: str,
        keys: list[str],
        job_ids: list[str],
        lane: Any = None,
        prevs: Any = None,
    ) -> AsyncIterator[tuple[_Txn, dict[str, Any], set[str]]]:
        self.held += len(keys)
        self.peak = max(self.peak, self.held)
        self.biggest = max(self.biggest, len(keys))
        try:
            await asyncio.sleep(0.002)  # the database's round trip
            yield _Txn(), {}, set()
            await asyncio.sleep(0.002)  # the COMMIT
        finally:
            self.held -= len(keys)


def test_batches_of_all_lanes_share_the_lock_budget() -> None:
    driver = recording_driver("pump-locks")

    async def main() -> _CountingGuard:
        d = _dispatcher(driver, "i-locks-a", linger_ms=0, batch_size=20, guard_locks=300)
        d._bound["i-locks-b"] = d._bound["i-locks-a"]
        guard = _CountingGuard()
        d._guard = guard  # type: ignore[assignment]
        _submit(d, "i-locks-a", range(2000))
        _submit(d, "i-locks-b", range(2000, 4000))
        await _until_finished(d, 4000, timeout=30)
        for lane in d._lanes.values():
            lane.task.cancel()
        assert d.locks_held == 0
        return guard

    guard = asyncio.run(main())
    assert guard.peak <= 300
    # Quick calls fill their batches up to what the budget leaves (not 20 per batch).
    assert guard.biggest > 100


class _RevokingConsumer:
    """Records the synchronous commits a revocation makes."""

    def __init__(self) -> None:
        self.commits: list[list[TopicPartition]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        self.commits.append(offsets)


def test_a_revocation_served_on_the_loop_thread_neither_waits_nor_loses_work() -> None:
    driver = recording_driver("pump-revoke")
    driver.delay_s = 0.05

    async def main() -> tuple[Dispatcher, _RevokingConsumer, float, int, int]:
        d = _dispatcher(driver, "i-revoke", linger_ms=0, batch_size=4, max_in_flight=1)
        _submit(d, "i-revoke", range(40))
        lane = d._lanes["i-revoke"]
        while lane.running == 0:
            await asyncio.sleep(0.001)
        consumer = _RevokingConsumer()
        started = time.monotonic()
        # A poll on the loop's thread serves the revocation: waiting for the loop from here
        # would wait forever, so it must return at once.
        d._on_revoke(consumer, [TopicPartition(*TP)])  # type: ignore[arg-type]
        took = time.monotonic() - started
        queued = sum(len(chain) for chain in lane.chains.values())
        running = d._busy[TP]
        while d._busy[TP]:
            await asyncio.sleep(0.005)
        lane.task.cancel()
        return d, consumer, took, queued, running

    d, consumer, took, queued, running = asyncio.run(main())
    assert took < 0.05
    assert TP not in d._parts  # the partition is gone
    assert running > 0  # some jobs were being delivered: they finished, uncommitted
    assert queued == running  # every queued job was handed back; only those started remain
    assert driver.calls and len(driver.calls) < 40
    # Nothing had finished at the revocation: the commit stays at the first job started.
    assert [[(tp.topic, tp.partition, tp.offset) for tp in c] for c in consumer.commits] == [
        [(*TP, 0)]
    ]


def test_the_held_jobs_of_an_open_circuit_are_parked_in_order_and_their_offsets_finish() -> None:
    from pim_hub.services.dispatcher.core.breaker import BreakerPolicy

    integration = "i-park"
    driver = recording_driver("pump-park")

    async def main() -> tuple[Dispatcher, list[str]]:
        d = _dispatcher(
            driver,
            integration,
            linger_ms=0,
            order_hold_s=0,
            retry_delays_s=(1, 2),
            breaker=BreakerPolicy(threshold=1, probe_min_s=60),
        )
        lane = d._lanes[integration] = _Lane(d, integration)
        lane.breaker.failed(time.monotonic())  # open: nothing goes out for a minute
        for off in range(6):
            record = job_record(
                integration, d.driver_key, "normal", f"product:p{off % 3}", [], version(off)
            )
            d._parts[TP].take(off, 100)
            lane.submit(_Work(TP, off, b"k", Job.model_validate(record)))
        await asyncio.sleep(0.05)
        assert d._parts[TP].in_flight() == 6  # held in the buffer
        works = [w for chain in lane.chains.values() for w in chain]
        d._park_held()
        lane.task.cancel()
        assert all(w.state == "parked" for w in works)
        return d, [w.job.mutation.entity_key for w in works]

    d, keys = asyncio.run(main())
    assert driver.calls == []
    producer = d._producer.producer
    assert isinstance(producer, _Producer)
    # Each to the longest retry tier, acknowledged: the offsets can be committed.
    assert producer.topics == [d.retry_topics[-1]] * 6
    assert d._parts[TP].in_flight() == 0 and d._parts[TP].commit_point() == 6
    assert d.stats.parked == 6 and not d._lanes[integration].chains
    # Entity by entity, each entity's jobs in their order.
    assert keys == [
        "product:p0",
        "product:p0",
        "product:p1",
        "product:p1",
        "product:p2",
        "product:p2",
    ]
