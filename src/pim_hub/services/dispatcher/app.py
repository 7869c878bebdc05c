"""The dispatcher: one consumer group per driver and priority, delivering jobs through a driver.

Shape: a poll loop that never blocks on delivery, and one lane per integration.
- The poll loop decodes records, hands them to lanes, pauses partitions that are too far
  ahead (backpressure) or whose next retry is not due, and commits acknowledged offsets.
- A lane keeps one queue per entity (per-entity order), feeds the heads of those queues to
  `handle_batch` in batches, under the integration's concurrency and requests-per-second
  limits, behind the PostgreSQL version guard.
- An offset is committed only once the record's status event (and retry or dead letter) is
  acknowledged by the broker; after a crash everything uncommitted is read again and the
  version guard recognises what was already delivered.

Modules: base (state), work (shared types), acks, lane, rebalance, flow (backpressure and
commits), routing, integrations, delivery (guarded), reporting; this one runs the poll loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from pim_hub.registry.mapping import open_pool
from pim_hub.runtime import health, metrics
from pim_hub.runtime.http import async_client
from pim_hub.runtime.kafka import (
    AsyncProducer,
    consumer_config,
    make_producer,
)
from pim_hub.schemas import topics
from pim_hub.services.dispatcher.circuits import CircuitReporter
from pim_hub.services.dispatcher.delivery import DeliveryMixin
from pim_hub.services.dispatcher.flow import FlowMixin
from pim_hub.services.dispatcher.guard_store import GuardStore
from pim_hub.services.dispatcher.integrations import IntegrationsMixin
from pim_hub.services.dispatcher.lane import _Lane
from pim_hub.services.dispatcher.rebalance import RebalanceMixin
from pim_hub.services.dispatcher.reporting import ReportingMixin
from pim_hub.services.dispatcher.routing import RoutingMixin
from pim_hub.services.dispatcher.work import (
    FETCH_QUEUE_BACKOFF_MS,
    Stats,
    _Bound,
    _Work,
    group_id,
    logger,
)


class Dispatcher(
    RebalanceMixin, FlowMixin, RoutingMixin, IntegrationsMixin, DeliveryMixin, ReportingMixin
):
    """Consumes one priority's jobs (and due retries) for one driver; delivers; reports status.

    Its parts: `base` (state, lifecycle), `rebalance`, `flow` (backpressure and commits),
    `routing`, `integrations`, `delivery` (the version guard and the driver), `reporting`;
    one `lane._Lane` per integration. This class is the poll loop.
    """

    def consumer_conf(self) -> dict[str, Any]:
        """The librdkafka configuration of this dispatcher's consumer."""
        return consumer_config(
            self.settings,
            self.group,
            # The bulk lane (replays and resyncs): no live change waits for its jobs.
            background=self.priority == topics.BULK_PRIORITY,
            **{
                "max.poll.interval.ms": 300000,
                "on_commit": self._on_commit,
                # librdkafka prefetches up to 64 MB of records by default: held to the
                # dispatcher's own byte budget.
                "queued.max.messages.kbytes": max(1024, self.options.max_buffered_bytes // 1024),
                # Once that queue is full librdkafka postpones the partition's next fetch by
                # this much (1 s by default), even if the queue drains at once: with a
                # backlog the lanes ran dry and the dispatcher idled half the time (the
                # no-op benchmark went from 0.37 to 0.44 of the passthrough with 10 ms).
                "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            },
        )

    async def run(self) -> None:
        """Consume until stopped (SIGTERM); raises RuntimeError after a failure."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        conf = self.consumer_conf()
        # As the consumer will fetch: the user's properties may override the hub's wait.
        self._fetch_wait_s = int(conf["fetch.wait.max.ms"]) / 1000
        consumer = Consumer(conf)
        consumer.subscribe(
            [topics.job_topic(self.priority), *self.retry_topics],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._producer = AsyncProducer(make_producer(self.settings))
        await self._producer.start()
        # One connection per guard batch, plus two that the batches never take, so the
        # drivers' mapping look-ups always get one (a batch holding the last connection
        # while its driver waits for another would wait forever); capped so a few
        # dispatchers stay well inside PostgreSQL's max_connections.
        self._guard_free = asyncio.Semaphore(self.guard_slots)
        pool_size = self.guard_slots + 2
        self._pool = await open_pool(self.settings.require_database(), max_size=pool_size)
        self._guard = GuardStore(self._pool, self.options.guard_synchronous_commit)
        circuits = CircuitReporter(
            self._pool,
            self.driver_key,
            self.priority,
            lambda: list(self._lanes.values()),
            self.circuit_changed,
        )
        self._http = async_client(timeout=30, max_connections=200)
        loop = self._loop
        metrics.start_from_env(
            "dispatcher",
            kafka=self.settings.kafka_config(),
            database_url=self.settings.require_database(),
            group=self.group,
        )
        unwatch = health.watch_event_loop(loop)
        logger.info("dispatcher started", extra={"group": self.group})
        streaming = False
        circuit_task = asyncio.create_task(circuits.run(), name="circuits")
        try:
            while not self._stop.is_set():
                health.HEALTH.beat("poll", health.POLL_ALLOWANCE_S)
                await self._integrations()
                self._resume(consumer)
                size = self._poll_size()
                if size:
                    # While records keep coming (the last poll found some), what librdkafka has
                    # already fetched is taken on the loop's thread; otherwise, and when that
                    # finds nothing, a worker thread waits for more. Every poll in a worker
                    # cost the loop a fifth more CPU per job (the no-op benchmark's main
                    # thread: 52-64 us a job against 35-52), whatever the poll's timeout.
                    msgs = consumer.consume(size, 0) if streaming else []
                    if not msgs:
                        msgs = await loop.run_in_executor(
                            None, consumer.consume, size, self.options.linger_ms / 1000
                        )
                    streaming = bool(msgs)
                else:
                    # Jobs an open circuit holds must not keep the others out: parked.
                    self._park_held()
                    # The byte budget is spent: take nothing until batches finish. Not a
                    # pause: pausing makes librdkafka drop what it has fetched, and every
                    # resume fetched it again (the embedded broker answers a fetch with the
                    # partition's whole backlog), which starved the lanes for seconds. A
                    # rebalance waits for the next poll, as long as a batch takes.
                    msgs = []
                    await asyncio.sleep(self.options.linger_ms / 1000 or 0.005)
                if msgs:
                    await self._route(consumer, msgs)
                self._apply_backpressure(consumer)
                if self._backpressured:
                    # A partition paused for its count of records may be full of held jobs.
                    self._park_held()
                self._rest_idle_retries(consumer)
                if time.monotonic() - self._last_commit >= self.options.commit_interval_s:
                    self._commit(consumer, asynchronous=True)
        finally:
            circuit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await circuit_task
            try:
                await circuits.close()
                await self._shutdown(consumer)
            finally:
                # Out of the process's health registry: the last beats of a stopped
                # dispatcher would fail the liveness of what still runs beside it.
                unwatch()
                health.HEALTH.forget("poll")
        if self.failure is not None:
            raise RuntimeError(self.failure)

    async def _shutdown(self, consumer: Consumer) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.options.shutdown_timeout_s
        # Stop reading; jobs not started go back to the topic (not committed) and are read
        # again by whoever owns the partition next; jobs being delivered get the time left.
        with contextlib.suppress(Exception):
            consumer.pause(consumer.assignment())
        if self._registrar is not None:
            self._registrar.cancel()  # jobs not handed to a lane yet are read again
        for lane in self._lanes.values():
            lane.hand_back(None)
        await self._wait_running(None, deadline)
        if self.failure is None:
            self._commit(consumer, asynchronous=False)
        for lane in self._lanes.values():
            lane.task.cancel()
        await self._producer.close(timeout=max(1.0, deadline - time.monotonic()))
        self._parts.clear()
        # Leaving the group now hands the partitions over at once (no session timeout).
        await loop.run_in_executor(None, consumer.close)
        for bound in self._bound.values():
            if bound.driver is not None:
                await bound.driver.close()
        for driver in self._retired:
            await driver.close()
        await self._http.aclose()
        await self._pool.close()
        logger.info(
            "dispatcher stopped",
            extra={"group": self.group, "statuses": dict(self.stats.by_status)},
        )


def run_in_thread(dispatcher: Dispatcher) -> Callable[[], None]:
    """Run a dispatcher on its own event loop in a thread; returns a function that stops it."""
    import threading

    holder: dict[str, asyncio.AbstractEventLoop] = {}
    started = threading.Event()

    async def main() -> None:
        holder["loop"] = asyncio.get_running_loop()
        started.set()
        await dispatcher.run()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)

    def stop() -> None:
        holder["loop"].call_soon_threadsafe(dispatcher.stop)
        thread.join(dispatcher.options.shutdown_timeout_s + 15)

    return stop


__all__ = [
    "Dispatcher",
    "GuardStore",
    "Stats",
    "_Bound",
    "_Lane",
    "_Work",
    "group_id",
    "run_in_thread",
]
