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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from pim_hub.drivers.base import DeliveryResult, Driver, IntegrationContext
from pim_hub.drivers.discovery import DriverCatalogue, discover
from pim_hub.registry.limits import (
    InvalidRateLimit,
    RateLimit,
    TokenBucket,
    without_rate_limit,
)
from pim_hub.registry.mapping import PostgresMappingService, open_pool
from pim_hub.registry.model import Integration
from pim_hub.registry.store import list_integrations
from pim_hub.runtime import health, metrics, tracing
from pim_hub.runtime.http import async_client
from pim_hub.runtime.kafka import (
    AsyncProducer,
    DeliveryFailed,
    Headers,
    consumer_config,
    make_producer,
)
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.errors import SchemaError
from pim_hub.schemas.events import Job
from pim_hub.schemas.serde import Serde
from pim_hub.services.dispatcher.core.breaker import STATE_VALUES, CircuitBreaker, is_outage
from pim_hub.services.dispatcher.core.guard import (
    FORCE_MODES,
    GuardDecision,
    decide,
    parse_version,
)
from pim_hub.services.dispatcher.core.offsets import PartitionOffsets
from pim_hub.services.dispatcher.guard_store import GuardStore, Recording
from pim_hub.services.dispatcher.policy import classify
from pim_hub.services.dispatcher.settings import DispatcherOptions

logger = logging.getLogger(__name__)

TP = tuple[str, int]

#: Attempts to record one delivery on its own after its batch's transaction failed.
RECORD_ATTEMPTS = 12

#: How long librdkafka waits before fetching again for a partition whose prefetch queue was
#: full (see `Dispatcher.run`).
FETCH_QUEUE_BACKOFF_MS = 10


def group_id(driver: str, priority: str) -> str:
    """The consumer group of a driver and priority."""
    return f"hub.dispatch.{driver}.{priority}"


def _tp(msg: Message) -> TP:
    topic, partition = msg.topic(), msg.partition()
    assert topic is not None and partition is not None  # always set on a consumed record
    return topic, partition


def _offset(msg: Message) -> int:
    offset = msg.offset()
    assert offset is not None
    return offset


class _Work:
    """One decoded job, where it came from, and where it is in its lifecycle.

    Only the validated Job is kept, not the decoded record as well: a retry or dead letter
    (rare) rebuilds the record from it, and every buffered job costs half the objects
    (the collector walks them all on each full collection).
    """

    __slots__ = ("chain", "job", "key", "offset", "state", "tp", "trace")

    def __init__(self, tp: TP, offset: int, key: bytes | None, job: Job) -> None:
        self.tp = tp
        self.offset = offset
        self.key = key
        self.job = job
        self.chain = job.mutation.entity_key  # the entity: one job of it at a time
        self.state = "queued"  # queued | ready | running | finished
        #: The record's trace headers (`runtime.tracing`): passed on to its retry, dead
        #: letter and status, and the parent of its delivery's span.
        self.trace: tracing.TraceHeaders | None = None


@dataclass
class Stats:
    """Counters the dispatcher keeps for logs, tests and benchmarks."""

    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    undecodable: int = 0
    foreign: int = 0
    driver_calls: int = 0
    #: Most encoded bytes of records buffered at once; partitions whose records of a poll
    #: went back to the broker because the budget was spent.
    peak_buffered_bytes: int = 0
    budget_returns: int = 0
    #: Times a job waited for an older job of its entity in another lane.
    held: int = 0

    @property
    def finished(self) -> int:
        """Jobs that reached a status (retrying included)."""
        return sum(self.by_status.values())


class _Acks:
    """The outputs of one record still waiting for the broker; the record is finished at zero.

    It is the librdkafka delivery callback of each of those outputs: one small object per
    record instead of a future per output and a task per record.
    """

    __slots__ = ("d", "failed", "left", "offset", "tp")

    def __init__(self, dispatcher: Dispatcher, tp: TP, offset: int, left: int) -> None:
        self.d = dispatcher
        self.tp = tp
        self.offset = offset
        self.left = left
        self.failed = False

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        d = self.d
        if threading.get_ident() != d._loop_thread:
            # The producer's poll thread (or the final flush): queue the acknowledgement and
            # wake the loop once for all those one poll serves, not once per record.
            d._acked.append((self, err, msg))
            if not d._ack_wake:
                d._ack_wake = True
                assert d._loop is not None
                with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to mark
                    d._loop.call_soon_threadsafe(d._take_acks)
            return
        self.settle(err, msg)

    def settle(self, err: KafkaError | None, msg: Message) -> None:
        """One output acknowledged (or refused), on the loop thread."""
        d = self.d
        if err is not None and not self.failed:
            self.failed = True
            d._fail(f"the broker refused a write: {DeliveryFailed(msg.topic() or '?', err)}")
        self.left -= 1
        if self.left == 0:
            d._busy[self.tp] -= 1
            part = d._parts.get(self.tp)
            if part is not None and not self.failed:
                part.done(self.offset)


class _Bound:
    """An integration with its open driver, context and limits (or why it cannot run)."""

    def __init__(
        self,
        integration: Integration,
        driver: Driver | None,
        context: IntegrationContext | None,
        limit: RateLimit,
        broken: str | None = None,
        batching: bool = False,
    ) -> None:
        self.integration = integration
        self.driver = driver
        self.context = context
        self.limit = limit
        self.broken = broken
        self.batching = batching


class _Lane:
    """The jobs of one integration: per-entity queues, batching, limits."""

    def __init__(self, dispatcher: Dispatcher, integration_id: str) -> None:
        self.d = dispatcher
        self.integration_id = integration_id
        self.chains: dict[str, deque[_Work]] = {}
        self.ready: deque[_Work] = deque()
        self.running = 0
        self.bucket = TokenBucket(None, 1)
        self.wake = asyncio.Event()
        self.throttle_lock = asyncio.Lock()
        self.sem_size = 0
        self.sem = asyncio.Semaphore(1)
        self.call_s: float | None = None  # mean time of one driver call (job by job)
        self.lingered_at = float("-inf")  # when the pump last waited for a batch to fill
        self.breaker = CircuitBreaker(dispatcher.options.breaker)
        self.kick = asyncio.Event()  # the breaker changed: a waiting pump looks again
        self.circuit_gauge = metrics.DISPATCH_CIRCUIT.labels(
            dispatcher.driver_key, integration_id, dispatcher.priority
        )
        self.circuit_gauge.set(STATE_VALUES["closed"])
        self.task = asyncio.create_task(self._pump(), name=f"lane-{integration_id}")

    def submit(self, w: _Work) -> None:
        chain = self.chains.get(w.chain)
        if chain is None:
            chain = self.chains[w.chain] = deque()
        chain.append(w)
        if len(chain) == 1:
            w.state = "ready"
            self.ready.append(w)
            self.wake.set()

    def advance(self, w: _Work) -> None:
        """w is delivered (or settled): its entity's next job becomes ready."""
        chain = self.chains.get(w.chain)
        if chain and chain[0] is w:
            chain.popleft()
            if chain:
                chain[0].state = "ready"
                self.ready.append(chain[0])
                self.wake.set()
            else:
                del self.chains[w.chain]

    def hand_back(self, tps: set[TP] | None) -> None:
        """Forget jobs not yet started (of some partitions, or all): they will be read again."""
        for ekey in list(self.chains):
            kept = deque(
                w
                for w in self.chains[ekey]
                if w.state == "running" or (tps is not None and w.tp not in tps)
            )
            if kept:
                self.chains[ekey] = kept
            else:
                del self.chains[ekey]
        self.ready = deque(c[0] for c in self.chains.values() if c[0].state != "running")
        for w in self.ready:
            w.state = "ready"

    def limit(self) -> RateLimit:
        bound = self.d._bound.get(self.integration_id)
        return bound.limit if bound else RateLimit(None, self.d.options.max_in_flight, 1)

    async def _pump(self) -> None:
        opts = self.d.options
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.ready:
                limit = self.limit()
                if self.bucket.rate != limit.requests_per_s or self.bucket.burst != limit.burst:
                    self.bucket = TokenBucket(limit.requests_per_s, limit.burst)
                if self.sem_size != limit.concurrent:
                    self.sem, self.sem_size = asyncio.Semaphore(limit.concurrent), limit.concurrent
                bound = self.d._bound.get(self.integration_id)
                batching = bound is not None and bound.batching
                # Batching drivers: one request per batch, so batches are the requests.
                # Others: one batch more than the `concurrent` request slots, so a batch
                # recording and reporting overlaps the next one's requests; their requests
                # share the lane's semaphore. Every batch holds a guard connection: never
                # more batches than the dispatcher has guard connections.
                slots = min(limit.concurrent + (0 if batching else 1), self.d.guard_slots)
                if self.running >= slots:
                    await self.d.wait_batch_done()
                    continue
                if (
                    len(self.ready) < opts.batch_size
                    and opts.linger_ms > 0
                    and self.running
                    and time.monotonic() - self.lingered_at >= opts.linger_ms / 1000
                ):
                    # Linger only while busy: an idle lane sends at once for low latency.
                    # And once per linger period: what is ready after it goes out at once,
                    # spread over the free slots, not one batch per period (a short
                    # backlog would otherwise trickle out a few jobs every linger_ms).
                    await asyncio.sleep(opts.linger_ms / 1000)
                    self.lingered_at = time.monotonic()
                    continue  # the slots, the lock budget and what is ready have moved on
                if batching:
                    # A bulk request costs about the same for 1 job or 50: fill it.
                    size = opts.batch_size
                else:
                    # Spread the ready jobs over the free slots, so a small backlog still
                    # uses every slot. Quick calls share bigger batches: a guard transaction
                    # costs two round trips and a commit whatever its size, and the more
                    # batches, the more the loop switches between them.
                    free = max(1, slots - self.running)
                    most = opts.batch_size
                    if self.call_s is not None:
                        quick = int(limit.concurrent * opts.guard_batch_s / max(self.call_s, 1e-6))
                        most = max(most, min(opts.guard_batch_size, quick))
                    size = min(most, max(1, -(-len(self.ready) // free)))
                # Every job of a batch holds an advisory lock until its transaction ends:
                # the batches of all lanes share the dispatcher's lock budget. Big batches
                # of quick calls are then only a few at once; a batch waits for room for
                # at least `batch_size` jobs rather than going out with a handful.
                room = opts.guard_locks - self.d.locks_held
                if room < min(size, len(self.ready), opts.batch_size):
                    await self.d.wait_batch_done()
                    continue
                size = min(size, room)
                wait = self.breaker.probe_wait(time.monotonic())
                if wait is not None:
                    if wait > 0:
                        # The target is down: the jobs wait here, no attempt spent, until
                        # the next probe is due or a probe's answer changes the state.
                        await self._nap(wait)
                        continue
                    size = 1  # the probe: one job, alone
                batch = [self.ready.popleft() for _ in range(min(size, len(self.ready)))]
                for w in batch:
                    w.state = "running"
                    self.d._busy[w.tp] += 1
                self.running += 1
                self.d.locks_held += len(batch)
                metrics.DISPATCH_IN_FLIGHT.labels(self.d.driver_key, self.d.priority).inc(
                    len(batch)
                )
                task = asyncio.create_task(self._run(batch))
                self.d._tasks.add(task)
                task.add_done_callback(self.d._tasks.discard)

    async def throttle(self, n: int) -> None:
        """Wait for n requests' worth of tokens (FIFO among this lane's batches)."""
        if self.bucket.rate is None:
            return  # no rate limit: nothing to wait for, no lock to take
        async with self.throttle_lock:
            wait = self.bucket.take(time.monotonic(), n)
            while wait > 0:
                metrics.DISPATCH_RATE_LIMIT_WAIT.labels(
                    self.d.driver_key, self.integration_id
                ).observe(wait)
                await asyncio.sleep(wait)
                wait = self.bucket.take(time.monotonic(), n)

    async def _run(self, batch: list[_Work]) -> None:
        held: dict[int, str] = {}
        try:
            held = await self.d._deliver_batch(self.integration_id, batch, self)
        except Exception:
            logger.exception("batch failed", extra={"integration": self.integration_id})
            self.d._fail("a batch failed unexpectedly")
        finally:
            self.running -= 1
            self.d.locks_held -= len(batch)
            metrics.DISPATCH_IN_FLIGHT.labels(self.d.driver_key, self.d.priority).dec(len(batch))
            self.d.batch_done.set()
            for i, w in enumerate(batch):
                if i in held:
                    # Waits for an older job of its entity in another lane: not an attempt,
                    # nothing reported; it stays at the head of its entity's queue.
                    w.state = "held"
                    self.d._busy[w.tp] -= 1
                    asyncio.get_running_loop().call_later(
                        self.d.options.order_recheck_s, self.requeue, w
                    )
                else:
                    w.state = "finished"
                    self.advance(w)

    async def _nap(self, seconds: float) -> None:
        """Sleep, or less if the breaker changes state meanwhile."""
        self.kick.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.kick.wait(), seconds)

    def account(self, results: list[DeliveryResult]) -> None:
        """The answers of the target to one batch's calls, in order, for the breaker."""
        br, before = self.breaker, self.breaker.state
        now = time.monotonic()
        for r in results:
            if is_outage(r.outcome, r.retryable, r.target_status, r.error_kind):
                br.failed(now, r.retry_after)
            else:
                br.succeeded()
        if br.state == before or {br.state, before} == {"open", "half_open"}:
            return
        self.circuit_gauge.set(STATE_VALUES[br.state])
        self.kick.set()
        if br.state == "open":
            last = results[-1]
            logger.warning(
                "circuit opened: the target fails for everything; jobs wait, one probe at a time",
                extra={
                    "integration": self.integration_id,
                    "priority": self.d.priority,
                    "failures": br.failures,
                    "error": last.reason,
                },
            )
        else:
            self.circuit_gauge.set(STATE_VALUES["closed"])
            logger.warning(
                "circuit closed: the target answers again; jobs resume",
                extra={"integration": self.integration_id, "priority": self.d.priority},
            )
            self.wake.set()
            self.d.release_retries(self.integration_id)

    def requeue(self, w: _Work) -> None:
        """A held job is ready again (unless handed back meanwhile)."""
        chain = self.chains.get(w.chain)
        if w.state == "held" and chain and chain[0] is w:
            w.state = "ready"
            self.ready.append(w)
            self.wake.set()


class Dispatcher:
    """Consumes one priority's jobs (and due retries) for one driver; delivers; reports status."""

    def __init__(
        self,
        settings: Settings,
        driver_key: str,
        priority: str,
        catalogue: DriverCatalogue | None = None,
        options: DispatcherOptions | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or DispatcherOptions.from_settings(settings)
        self.driver_key = driver_key
        self.priority = priority
        self.catalogue = catalogue or discover()
        self.driver_cls = self.catalogue.get(driver_key)
        # A driver that overrides handle_batch gets whole batches (one call per batch);
        # otherwise the dispatcher calls handle() for each job of a batch concurrently. A
        # driver whose batching depends on its config says so per integration (_bind).
        self.batching = self.driver_cls.handle_batch is not Driver.handle_batch
        topics.job_topic(priority)  # raises early on an unknown priority
        self.serde = Serde(settings.registry_config())
        self.group = group_id(driver_key, priority)
        self.retry_topics = [topics.retry_topic(d) for d in self.options.retry_delays_s]
        self.stats = Stats()
        self.failure: str | None = None
        self._bound: dict[str, _Bound] = {}
        self._retired: list[Driver] = []
        self._loaded_at = float("-inf")
        self._lanes: dict[str, _Lane] = {}
        self._parts: dict[TP, PartitionOffsets] = {}
        self._not_due: dict[TP, float] = {}
        #: When each integration's circuit last closed (wall clock): its earlier retries are due.
        self._closed_at: dict[str, float] = {}
        self._backpressured: set[TP] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy: dict[TP, int] = defaultdict(int)  # started, outputs not yet acknowledged
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._observers: dict[tuple[str, str, str | None], metrics.JobSeries] = {}
        self._last_commit = 0.0
        #: Acknowledgements served off the loop thread, and whether the loop is woken for them.
        self._acked: deque[tuple[_Acks, KafkaError | None, Message]] = deque()
        self._ack_wake = False
        #: Mean encoded size of a job record (moving), to size polls to the byte budget.
        self._record_bytes = 1000.0
        #: Guard transactions (batches) at once, over all lanes: one more than the requests
        #: in flight (see _Lane._pump), at most 8.
        self.guard_slots = max(1, min(self.options.max_in_flight + 1, 8))
        #: Jobs in batches started and not finished, over all lanes: the advisory locks
        #: their guard transactions hold (or will), kept within `options.guard_locks`.
        self.locks_held = 0
        #: Set whenever a batch finishes: pumps waiting for a slot or for lock room look again.
        self.batch_done = asyncio.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    async def wait_batch_done(self) -> None:
        """Until some batch (of any lane) finishes."""
        self.batch_done.clear()
        await self.batch_done.wait()

    def stop(self) -> None:
        """Stop taking work, finish or hand back what is in flight, commit, leave the group."""
        self._stop.set()

    def _take_acks(self) -> None:
        # Cleared before the queue is read: an acknowledgement queued meanwhile either is
        # read below or wakes the loop again.
        self._ack_wake = False
        acked = self._acked
        while acked:
            acks, err, msg = acked.popleft()
            acks.settle(err, msg)

    def _fail(self, reason: str) -> None:
        # The broker refused a write or something unexpected broke: stop without committing
        # the affected offsets, so a restart reads those jobs again.
        if self.failure is None:
            self.failure = reason
            logger.error("dispatcher failing", extra={"reason": reason})
        self._stop.set()

    def consumer_conf(self) -> dict[str, Any]:
        """The librdkafka configuration of this dispatcher's consumer."""
        return consumer_config(
            self.settings,
            self.group,
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
        consumer = Consumer(self.consumer_conf())
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
        self._http = async_client(timeout=30, max_connections=200)
        loop = self._loop
        metrics.start_from_env(
            "dispatcher",
            kafka=self.settings.kafka_config(),
            database_url=self.settings.require_database(),
            group=self.group,
        )
        health.watch_event_loop(loop)
        logger.info("dispatcher started", extra={"group": self.group})
        streaming = False
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
                if time.monotonic() - self._last_commit >= self.options.commit_interval_s:
                    self._commit(consumer, asynchronous=True)
        finally:
            await self._shutdown(consumer)
        if self.failure is not None:
            raise RuntimeError(self.failure)

    async def _shutdown(self, consumer: Consumer) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.options.shutdown_timeout_s
        # Stop reading; jobs not started go back to the topic (not committed) and are read
        # again by whoever owns the partition next; jobs being delivered get the time left.
        with contextlib.suppress(Exception):
            consumer.pause(consumer.assignment())
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

    async def _wait_running(self, tps: set[TP] | None, deadline: float) -> None:
        """Wait until the started jobs (of some partitions) are acknowledged, or the deadline."""
        while time.monotonic() < deadline:
            if not any(n for tp, n in self._busy.items() if tps is None or tp in tps):
                return
            await asyncio.sleep(0.02)
        logger.warning("drain deadline passed; unfinished jobs will be read again")

    # ---- rebalance callbacks (run inside consume(): on a worker thread, or on the loop's) ----

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._parts[(tp.topic, tp.partition)] = PartitionOffsets()
        self._count_partitions()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            # Served by a poll on the loop's own thread: nothing can be awaited here. Queued
            # jobs go back and what is finished is committed; jobs being delivered finish
            # without a commit, so the new owner reads them again and finds them delivered
            # (the guard's delivered jobs): a second status, not a second delivery.
            offsets = self._release_now(tps)
        else:
            fut = asyncio.run_coroutine_threadsafe(self._release(tps), self._loop)
            try:
                offsets = fut.result(timeout=self.options.shutdown_timeout_s + 5)
            except Exception:
                logger.exception("could not drain revoked partitions")
                offsets = []
        if offsets and self.failure is None:
            with contextlib.suppress(Exception):
                consumer.commit(offsets=offsets, asynchronous=False)
        self._drop_partitions(tps)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else may own these already: drop the work, commit nothing.
        tps = {(tp.topic, tp.partition) for tp in partitions}
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            self._hand_back(tps)
        else:
            asyncio.run_coroutine_threadsafe(self._forget(tps), self._loop).result(timeout=10)
        self._drop_partitions(tps)

    def _drop_partitions(self, tps: set[TP]) -> None:
        """Forget the state of partitions this process no longer holds."""
        for tp in tps:
            self._parts.pop(tp, None)
            self._not_due.pop(tp, None)
            self._backpressured.discard(tp)
        self._count_partitions()

    def _count_partitions(self) -> None:
        metrics.DISPATCH_PARTITIONS.labels(self.driver_key, self.priority).set(len(self._parts))
        # Ready once the group has given this process an assignment (even an empty one).
        health.HEALTH.set("assigned", True, f"{len(self._parts)} partition(s)")

    def _hand_back(self, tps: set[TP]) -> None:
        for lane in self._lanes.values():
            lane.hand_back(tps)

    async def _forget(self, tps: set[TP]) -> None:
        self._hand_back(tps)

    async def _release(self, tps: set[TP]) -> list[TopicPartition]:
        """Hand back queued jobs of revoked partitions, let started ones finish, say what to commit."""
        self._hand_back(tps)
        await self._wait_running(tps, time.monotonic() + self.options.shutdown_timeout_s)
        return self._commit_points(tps)

    def _release_now(self, tps: set[TP]) -> list[TopicPartition]:
        """`_release` without waiting for the started jobs (on the loop's thread)."""
        self._hand_back(tps)
        running = sum(self._busy.get(tp, 0) for tp in tps)
        if running:
            logger.info(
                "partitions revoked while jobs were being delivered; the new owner reads them again",
                extra={"jobs": running, "partitions": len(tps)},
            )
        return self._commit_points(tps)

    def _commit_points(self, tps: set[TP]) -> list[TopicPartition]:
        out = []
        for tp in tps:
            part = self._parts.get(tp)
            point = part.commit_point() if part else None
            if point is not None:
                out.append(TopicPartition(tp[0], tp[1], point))
        return out

    # ---- poll loop steps --------------------------------------------------------------------

    def buffered_bytes(self) -> int:
        """Encoded bytes of the records taken and not finished, over all partitions."""
        return sum(part.open_bytes for part in self._parts.values())

    def _resume(self, consumer: Consumer) -> None:
        now = time.time()
        due = [tp for tp, at in self._not_due.items() if at <= now]
        for tp in due:
            del self._not_due[tp]
        easy: list[TP] = []
        if self._backpressured:
            half = self.options.max_buffered // 2
            easy = [
                tp
                for tp in self._backpressured
                if tp in self._parts and self._parts[tp].in_flight() <= half
            ]
        for tp in easy:
            self._backpressured.discard(tp)
        resume = [tp for tp in (*due, *easy) if tp not in self._not_due and tp in self._parts]
        resume = [tp for tp in resume if tp not in self._backpressured]
        if resume:
            consumer.resume([TopicPartition(t, p) for t, p in resume])

    def _apply_backpressure(self, consumer: Consumer) -> None:
        # The byte budget is kept by polling nothing (see run); a partition far ahead of the
        # others is paused, so one hot partition cannot take the whole budget.
        full = [
            tp
            for tp, part in self._parts.items()
            if tp not in self._backpressured and part.in_flight() >= self.options.max_buffered
        ]
        if full:
            # The poll loop keeps polling (and so stays in the group); these partitions
            # just stop fetching until their lanes catch up.
            consumer.pause([TopicPartition(t, p) for t, p in full])
            self._backpressured.update(full)

    def _poll_size(self) -> int:
        """Records to ask the next poll for: no more than the byte budget has room for.

        One poll of 500 creations' jobs would otherwise overshoot the budget many times over.
        0 once the budget is spent; at least 1 while there is any room (a single record may
        be bigger than the budget).
        """
        room = self.options.max_buffered_bytes - self.buffered_bytes()
        if room <= 0:
            return 0
        return max(1, min(self.options.poll_records, room // max(1, int(self._record_bytes))))

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # An asynchronous commit refused by the broker (typically during a rebalance) must be
        # sent again: forget it was made, or a partition with no new work would stay behind.
        failed = [tp for tp in partitions if err is not None or tp.error is not None]
        for tp in failed:
            part = self._parts.get((tp.topic, tp.partition))
            if part is not None and part.committed == tp.offset:
                part.committed = None
        if failed:
            logger.info(
                "commit refused; it will be sent again",
                extra={"error": str(err or failed[0].error), "partitions": len(failed)},
            )

    def _commit(self, consumer: Consumer, *, asynchronous: bool) -> None:
        self._last_commit = time.monotonic()
        offsets = []
        for (topic, partition), part in self._parts.items():
            point = part.commit_point()
            if point is not None:
                offsets.append(TopicPartition(topic, partition, point))
                part.committed_at(point)
        if not offsets:
            return
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:
            logger.warning("commit failed", extra={"error": str(exc)})
            for tp in offsets:
                stale = self._parts.get((tp.topic, tp.partition))
                if stale is not None:
                    stale.committed = None

    async def _route(self, consumer: Consumer, msgs: list[Message]) -> None:
        now = time.time()
        held: set[TP] = set()
        routed: list[_Work] = []
        reloaded = False
        budget, total = self.options.max_buffered_bytes, self.buffered_bytes()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    logger.warning("consumer error", extra={"error": str(err)})
                continue
            tp = _tp(msg)
            part = self._parts.get(tp)
            if tp in held or part is None:
                continue
            offset = _offset(msg)
            if total >= budget:
                # The poll was sized from the mean record and these are bigger: the
                # partition's further records go back to the broker undecoded and are read
                # again once the buffer has room.
                consumer.seek(TopicPartition(tp[0], tp[1], offset))
                part.rewind(offset)
                self.stats.budget_returns += 1
                held.add(tp)
                continue
            value = msg.value()
            size = len(value) if value else 0
            # The size polls are cut to: up at once, down slowly (a poll must not overshoot).
            rb = self._record_bytes
            self._record_bytes = size if size > rb else rb + (size - rb) * 0.05
            try:
                record = self.serde.decode("Job", value, topic=tp[0])
                job = Job.model_validate(record)
            except (SchemaError, ValueError) as exc:
                # Nothing to deliver; keep the bytes with the reason, never drop them.
                self.stats.undecodable += 1
                metrics.DISPATCH_DEAD_LETTERS.labels(
                    self.driver_key, "unknown", self.priority, "undecodable"
                ).inc()
                part.take(offset, size)
                total += size
                self._busy[tp] += 1
                self._dead_letter_raw(msg, str(exc), _Acks(self, tp, offset, 1))
                continue
            if job.driver != self.driver_key or job.priority != self.priority:
                self.stats.foreign += 1  # another group's job on a shared retry topic
                part.skip(offset)
                continue
            if (
                job.not_before is not None
                and job.not_before.timestamp() > now
                and not self._released(job)
            ):
                # A retry tier is ordered by due time: wait on this partition without
                # blocking the others, and read this record again when it is due.
                consumer.seek(TopicPartition(tp[0], tp[1], offset))
                consumer.pause([TopicPartition(tp[0], tp[1])])
                part.rewind(offset)
                self._not_due[tp] = job.not_before.timestamp()
                held.add(tp)
                continue
            if job.integration_id not in self._bound and not reloaded:
                reloaded = True  # a new integration: load it now rather than skip its jobs
                await self._integrations(force=True)
            part.take(offset, size)
            total += size
            work = _Work(tp, offset, msg.key(), job)
            work.trace = tracing.carrier(msg.headers()) or None
            routed.append(work)
        if total > self.stats.peak_buffered_bytes:
            self.stats.peak_buffered_bytes = total
        if routed and self.options.order_hold_s > 0:
            await self._register(routed)
        for work in routed:
            lane = self._lanes.get(work.job.integration_id)
            if lane is None:
                iid = work.job.integration_id
                lane = self._lanes[iid] = _Lane(self, iid)
            lane.submit(work)

    def release_retries(self, integration_id: str) -> None:
        """An integration's target is back: its retries scheduled before now are due now.

        The retry partitions waiting for a due time are read again at once; a retry of this
        integration that failed before the circuit closed goes out without waiting for its
        tier (the target was down, not the job wrong); the others wait on.
        """
        self._closed_at[integration_id] = time.time()
        retry = set(self.retry_topics)
        for tp in self._not_due:
            if tp[0] in retry:
                self._not_due[tp] = 0.0

    def _released(self, job: Job) -> bool:
        """Whether a retry not due yet failed before its integration's circuit last closed."""
        closed = self._closed_at.get(job.integration_id)
        if closed is None or job.attempt < 2 or job.not_before is None:
            return False
        delays = self.options.retry_delays_s
        tier = min(job.attempt - 2, len(delays) - 1)
        failed_at = job.not_before.timestamp() - delays[tier]  # Retry-After: later, not earlier
        return failed_at <= closed

    async def _register(self, routed: list[_Work]) -> None:
        """Say which jobs this dispatcher has read, before any of them can finish.

        The dispatchers of the driver's other priorities hold a newer job of the same entity
        while one of these is pending. A database error costs only that ordering: logged,
        and the jobs go on (the version guard still keeps older values out).
        """
        rows = [
            {
                "i": w.job.integration_id,
                "e": w.job.mutation.entity_key,
                "j": w.job.job_id,
                "p": self.priority,
                "v": w.job.mutation.version,
            }
            for w in routed
            if parse_version(w.job.mutation.version) is not None
        ]
        try:
            await self._guard.register(rows)
        except Exception as exc:
            logger.warning(
                "could not register pending jobs; order across lanes not kept for them",
                extra={"error": f"{type(exc).__name__}: {exc}", "jobs": len(rows)},
            )

    # ---- integrations -----------------------------------------------------------------------

    async def _integrations(self, force: bool = False) -> dict[str, _Bound]:
        """Integrations of this driver, reloaded every few seconds so changes apply live."""
        if not force and time.monotonic() - self._loaded_at < self.settings.integrations_refresh_s:
            return self._bound
        self._loaded_at = time.monotonic()
        try:
            rows = await asyncio.get_running_loop().run_in_executor(
                None, list_integrations, self.settings.require_database()
            )
        except (OperationalError, PoolTimeout) as exc:
            # The database is away: keep delivering with the integrations known.
            logger.warning(
                "could not reload the integrations; keeping the ones known",
                extra={"error": f"{exc!r}"[:500]},
            )
            return self._bound
        fresh: dict[str, _Bound] = {}
        for integ in rows:
            if integ.driver != self.driver_key:
                continue
            old = self._bound.get(integ.id)
            if old is not None and old.integration == integ:
                fresh[integ.id] = old
                continue
            if old is not None and old.driver is not None:
                self._retired.append(old.driver)  # batches may still use it; closed at exit
            fresh[integ.id] = await self._bind(integ)
        for gone in set(self._bound) - set(fresh):
            driver = self._bound[gone].driver
            if driver is not None:
                self._retired.append(driver)
        self._bound = fresh
        return fresh

    async def _bind(self, integ: Integration) -> _Bound:
        default = RateLimit(None, self.options.max_in_flight, 1)
        try:
            limit = RateLimit.from_config(integ.config, self.options.max_in_flight)
            config = self.driver_cls.validate_config(without_rate_limit(integ.config))
        except (InvalidRateLimit, ValidationError) as exc:
            # Its jobs go to the dead letters with this reason (redrive once fixed).
            logger.error("integration config invalid", extra={"integration": integ.id})
            return _Bound(integ, None, None, default, broken=f"invalid integration config: {exc}")
        driver = self.driver_cls()
        context = IntegrationContext(
            integration_id=integ.id,
            config=config,
            mapping=PostgresMappingService(self._pool, integ.id),
            http=self._http,
            logger=logging.getLogger(f"drivers.{self.driver_key}.{integ.id}"),
            metrics=metrics.TargetCalls(self.driver_key, integ.id),
        )
        await driver.open(context)
        return _Bound(integ, driver, context, limit, batching=self._batches(driver, context))

    def _batches(self, driver: Driver, context: IntegrationContext) -> bool:
        """Whether this integration's jobs go to handle_batch a batch at a time.

        The driver's `wants_batches(context)` decides per integration (the Magento driver
        batches only with `bulk: async`; its sync mode is faster job by job, concurrently).
        """
        return driver.wants_batches(context)

    # ---- delivery ---------------------------------------------------------------------------

    async def _deliver_batch(
        self, integration_id: str, batch: list[_Work], lane: _Lane
    ) -> dict[int, str]:
        """Guard, deliver, record and report one batch of distinct entities of one integration.

        Returns the indexes of the jobs held back, and why: not reported, to be tried again
        (order: an older job of their entity is pending in another lane; circuit: the
        target is down; guard: the database is away).
        """
        started = time.perf_counter()
        b = self._bound.get(integration_id)
        results: dict[int, tuple[DeliveryResult, GuardDecision | None]] = {}
        held: dict[int, str] = {}
        if b is None or not b.integration.enabled:
            for i in range(len(batch)):
                results[i] = (DeliveryResult.skipped("integration disabled or removed"), None)
        elif b.broken is not None:
            for i in range(len(batch)):
                results[i] = (DeliveryResult.permanent(b.broken, kind="invalid_config"), None)
        else:
            recording: dict[int, Recording] = {}
            try:
                await self._guarded(b, batch, results, lane, recording, held)
            except Exception as exc:
                held.clear()
                if not results and isinstance(exc, (OperationalError, PoolTimeout)):
                    # The database is away (a restart, a dropped connection) and nothing was
                    # decided or sent: the batch waits in its lane, no attempt spent.
                    logger.warning(
                        "version guard unavailable; the batch waits",
                        extra={"integration": integration_id, "error": f"{exc!r}"[:500]},
                    )
                    held.update(dict.fromkeys(range(len(batch)), "guard"))
                    await asyncio.sleep(self.options.guard_retry_s)
                logger.exception("guarded delivery failed", extra={"integration": integration_id})
                # The deliveries happened: each is recorded on its own, so one that cannot
                # be (or a transaction that could not commit) costs only its own retry.
                saved = await self._record_apart(integration_id, recording)
                for i in range(len(batch)):
                    # A delivery whose recording did not commit is tried again rather than
                    # reported delivered: the guard would not know the target has it.
                    if i not in results or (i in recording and i not in saved):
                        results[i] = (
                            DeliveryResult.retry(
                                f"version guard unavailable: {type(exc).__name__}",
                                kind="guard_unavailable",
                            ),
                            None,
                        )
                await self._settle_apart(integration_id, batch)
        duration_ms = (time.perf_counter() - started) * 1000 / max(1, len(batch))
        now = datetime.now(UTC)
        finished: dict[metrics.JobSeries, int] = {}
        for i, w in enumerate(batch):
            if i in held:
                continue
            result, decision = results[i]
            obs = self._report(w, result, decision, duration_ms, now)
            finished[obs] = finished.get(obs, 0) + 1
        for obs, jobs in finished.items():
            obs.count(jobs, duration_ms / 1000)
        if held:
            self.stats.held += len(held)
            for why in set(held.values()):
                n = sum(1 for v in held.values() if v == why)
                metrics.DISPATCH_HELD.labels(
                    self.driver_key, integration_id, self.priority, why
                ).inc(n)
        return held

    async def _guarded(
        self,
        b: _Bound,
        batch: list[_Work],
        results: dict[int, tuple[DeliveryResult, GuardDecision | None]],
        lane: _Lane,
        recording: dict[int, Recording],
        held: dict[int, str],
    ) -> None:
        """Lock, read, deliver, record (committed when the block ends).

        `recording` gets the indexes of the deliveries recorded in this transaction, `held`
        those of the jobs waiting for an older job of their entity in another lane.
        """
        assert b.driver is not None and b.context is not None
        keys = [w.job.mutation.entity_key for w in batch]
        job_ids = [w.job.job_id for w in batch]
        hold_s = self.options.order_hold_s
        order = (self.priority, hold_s) if hold_s > 0 else None
        async with (
            self._guard_free,
            self._guard.reading(b.integration.id, keys, job_ids, order) as (txn, stored, delivered),
        ):
            send: list[tuple[int, Job, GuardDecision]] = []
            older = txn.pending_older
            for i, w in enumerate(batch):
                m = w.job.mutation
                if older and m.entity_key in older:
                    mine = parse_version(m.version)
                    if mine is not None and older[m.entity_key] < mine:
                        held[i] = "order"  # an older job of this entity is in another lane
                        continue
                if w.job.job_id in delivered and w.job.mode not in FORCE_MODES:
                    # Read again after a crash or duplicated: report it as it ended.
                    results[i] = (DeliveryResult.delivered(), None)
                    continue
                dec = decide(
                    m.mutation_id,
                    m.operation,
                    m.changes,
                    m.version,
                    stored.get(m.entity_key, {}),
                    w.job.mode,
                )
                if dec.verdict == "stale":
                    results[i] = (DeliveryResult.skipped(dec.reason or "stale"), dec)
                elif dec.verdict == "already":
                    results[i] = (DeliveryResult.delivered(), dec)
                else:
                    job = w.job
                    if dec.verdict == "partial":
                        # The driver sees only the newer changes: it cannot send an old value.
                        changes = [m.changes[k] for k in dec.keep]
                        job = job.model_copy(
                            update={"mutation": m.model_copy(update={"changes": changes})}
                        )
                    send.append((i, job, dec))
            if send:
                self.stats.driver_calls += 1
                jobs = [job for _, job, _ in send]
                # Tokens are taken right before the target is called, so the pace holds at
                # the target whatever the database's latency (one token per job).
                traced = tracing.enabled()
                if b.batching:
                    await lane.throttle(1)
                    with tracing.batch_stage(
                        "dispatcher.deliver_batch",
                        [batch[i].trace for i, _, _ in send],
                        {"integration": b.integration.id},
                    ):
                        out = await self._call(b, b.driver.handle_batch(jobs, b.context), len(jobs))
                else:
                    driver, context = b.driver, b.context
                    done: list[DeliveryResult | None] = [None] * len(jobs)
                    todo = iter(range(len(jobs)))
                    sem, limited = lane.sem, lane.bucket.rate is not None

                    async def worker() -> None:
                        # A few workers per batch rather than a task per job; each holds one
                        # of the lane's `concurrent` slots while it calls the driver for one
                        # job after another (a slot taken per job cost more than a quick
                        # driver's call). The driver is awaited directly: a wrapper
                        # coroutine per job cost more too.
                        async with sem:
                            for k in todo:
                                if limited:
                                    await lane.throttle(1)
                                try:
                                    if traced:
                                        done[k] = await self._traced(
                                            driver, jobs[k], context, batch[send[k][0]]
                                        )
                                    else:
                                        done[k] = await driver.handle(jobs[k], context)
                                except Exception as exc:
                                    done[k] = self._raised(b, exc)

                    workers = min(len(jobs), max(1, lane.sem_size))
                    began = time.perf_counter()
                    if workers == 1:
                        await worker()
                    else:
                        await asyncio.gather(*(worker() for _ in range(workers)))
                    # What one call takes (waits for the lane's slots and tokens included).
                    took = (time.perf_counter() - began) * workers / len(jobs)
                    lane.call_s = took if lane.call_s is None else 0.7 * lane.call_s + 0.3 * took
                    out = [r for r in done if r is not None]
                lane.account(out)
                circuit_open = lane.breaker.state != "closed"
                rows = []
                for (i, job, dec), result in zip(send, out, strict=True):
                    if circuit_open and is_outage(
                        result.outcome, result.retryable, result.target_status, result.error_kind
                    ):
                        # The target is down, not this job's fault: it waits in its lane for
                        # the circuit to close (not an attempt, not a retry tier).
                        held[i] = "circuit"
                    results[i] = (result, dec)
                    if result.outcome == "delivered":
                        row = Recording(
                            job.mutation.entity_key,
                            dec.record,
                            job.job_id,
                            dec.force,
                            create=job.mutation.operation == "create",
                            by=job.mutation.mutation_id,
                        )
                        recording[i] = row
                        rows.append(row)
                # Recorded in the same transaction that holds the entity locks.
                await txn.record(rows)
            if order is not None:
                # Finished jobs (whatever their outcome) stop holding other lanes back.
                txn.settle(
                    [
                        (w.job.mutation.entity_key, w.job.job_id)
                        for i, w in enumerate(batch)
                        if i not in held
                    ]
                )

    async def _record_apart(self, integration_id: str, recording: dict[int, Recording]) -> set[int]:
        """Record deliveries one transaction each (their batch's failed); which succeeded."""
        saved: set[int] = set()
        for i, row in recording.items():
            # After a database restart the pool's idle connections are dead; each failed
            # attempt discards one, so a few attempts reach a fresh connection.
            for attempt in range(RECORD_ATTEMPTS):
                try:
                    async with (
                        self._guard_free,
                        self._guard.locked(integration_id, [row.entity_key]) as txn,
                    ):
                        await txn.record([row])
                    saved.add(i)
                    break
                except (OperationalError, PoolTimeout) as exc:
                    if attempt + 1 == RECORD_ATTEMPTS:
                        self._unrecorded(integration_id, row, exc)
                    else:
                        await asyncio.sleep(0.1 * (attempt + 1))
                except Exception as exc:
                    self._unrecorded(integration_id, row, exc)
                    break
        return saved

    def _unrecorded(self, integration_id: str, row: Recording, exc: Exception) -> None:
        logger.warning(
            "could not record a delivery; the job is tried again",
            extra={
                "integration": integration_id,
                "entity_key": row.entity_key,
                "job_id": row.job_id,
                "error": f"{exc!r}"[:500],
            },
        )

    async def _settle_apart(self, integration_id: str, batch: list[_Work]) -> None:
        """Take a failed batch's jobs off the pending list (best effort: else they expire)."""
        if self.options.order_hold_s <= 0:
            return
        with contextlib.suppress(Exception):
            async with self._guard_free, self._guard.locked(integration_id, []) as txn:
                txn.settle([(w.job.mutation.entity_key, w.job.job_id) for w in batch])

    @staticmethod
    async def _traced(
        driver: Driver, job: Job, context: IntegrationContext, w: _Work
    ) -> DeliveryResult:
        """One delivery in its span (a child of the job record's trace); the driver's HTTP
        request inside it carries the trace on."""
        with tracing.stage(
            "dispatcher.deliver",
            w.trace,
            {
                "job_id": job.job_id,
                "entity_key": job.mutation.entity_key,
                "integration": job.integration_id,
                "attempt": job.attempt,
            },
        ):
            return await driver.handle(job, context)

    async def _call(
        self, b: _Bound, call: Coroutine[Any, Any, list[DeliveryResult]], n: int
    ) -> list[DeliveryResult]:
        """A driver call; an exception or a wrong count becomes a retryable failure."""
        try:
            out = await call
            if len(out) != n:
                raise RuntimeError(f"handle_batch returned {len(out)} results for {n}")
            return out
        except Exception as exc:
            return [self._raised(b, exc)] * n

    def _raised(self, b: _Bound, exc: Exception) -> DeliveryResult:
        """A driver call that raised: logged, and a retryable failure."""
        logger.error("driver raised", exc_info=exc, extra={"integration": b.integration.id})
        return DeliveryResult.retry(
            f"driver raised {type(exc).__name__}: {exc}", kind="driver_exception"
        )

    def _send(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None,
        acks: _Acks,
        headers: Headers | None = None,
    ) -> None:
        producer = self._producer.producer
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=acks)
        except BufferError:
            producer.poll(0.1)  # queue full: serve callbacks once, then try again
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=acks)

    def _observer(self, integration_id: str, status: str, kind: str | None) -> metrics.JobSeries:
        key = (integration_id, status, kind)
        obs = self._observers.get(key)
        if obs is None:
            obs = self._observers[key] = metrics.JobSeries(
                self.driver_key, integration_id, self.priority, status, kind
            )
        return obs

    def _report(
        self,
        w: _Work,
        result: DeliveryResult,
        decision: GuardDecision | None,
        duration_ms: float,
        now: datetime,
    ) -> metrics.JobSeries:
        """Produce the status (and retry or dead letter) of one job; finish it on their acks.

        Returns the metric series the job counts in (counted once per batch by the caller).
        """
        job = w.job
        disposition = classify(
            result.outcome,
            result.retryable,
            job.attempt,
            self.options.max_attempts,
            self.options.retry_delays_s,
            result.retry_after,
        )
        outputs: list[tuple[str, bytes, Headers | None]] = []
        reason = result.reason
        kind = result.error_kind
        status: str
        if disposition.action == "done":
            status = result.outcome
            if decision is not None and decision.reason and status in ("delivered", "skipped"):
                reason, kind = decision.reason, "version_guard"
        elif disposition.action == "retry":
            status = "retrying"
            due = now + timedelta(seconds=disposition.delay_s)
            retry = {
                **job.to_record(),
                "attempt": job.attempt + 1,
                "not_before": due,
                "last_error": result.reason,
            }
            topic = self.retry_topics[disposition.tier]
            outputs.append((topic, self.serde.encode("Job", retry, topic=topic), w.trace))
        else:
            status = "dead"
            if result.retryable:
                reason = f"attempts exhausted ({job.attempt}): {result.reason}"
            dead = {**job.to_record(), "last_error": reason}
            outputs.append(
                (
                    topics.JOBS_DEAD,
                    self.serde.encode("Job", dead, topic=topics.JOBS_DEAD),
                    [
                        ("error.type", (kind or "failed").encode()),
                        ("error.message", (reason or "").encode()[:4000]),
                        ("error.attempts", str(job.attempt).encode()),
                        ("source.topic", w.tp[0].encode()),
                        *(w.trace or []),
                    ],
                )
            )
        self.stats.by_status[status] += 1
        obs = self._observer(job.integration_id, status, kind)
        obs.observe(job.mutation.source_received_at, now)
        status_record = {
            "job_id": job.job_id,
            "mutation_id": job.mutation.mutation_id,
            "integration_id": job.integration_id,
            "driver": job.driver,
            "entity_key": job.mutation.entity_key,
            "priority": job.priority,
            "status": status,
            "attempt": job.attempt,
            "error_kind": kind if (status != "delivered" or reason) else None,
            "error_message": reason if (status != "delivered" or reason) else None,
            "target_ref": result.target_ref,
            "duration_ms": duration_ms,
            "source_received_at": job.mutation.source_received_at,
            "occurred_at": now,
        }
        # Every output is queued before any can be acknowledged (callbacks run in poll()).
        acks = _Acks(self, w.tp, w.offset, len(outputs) + 1)
        for topic, value, headers in outputs:
            self._send(topic, value, w.key, acks, headers)
        self._send(
            topics.DELIVERY_STATUS,
            self.serde.encode("DeliveryStatus", status_record, topic=topics.DELIVERY_STATUS),
            job.mutation.entity_key,
            acks,
            w.trace,
        )
        if status != "delivered":
            logger.info(
                "job %s",
                status,
                extra={
                    "job_id": job.job_id,
                    "integration": job.integration_id,
                    "entity_key": job.mutation.entity_key,
                    "attempt": job.attempt,
                    "disposition": disposition.action,
                    "topic": w.tp[0],
                    "partition": w.tp[1],
                    "offset": w.offset,
                },
            )
        return obs

    def _dead_letter_raw(self, msg: Message, reason: str, acks: _Acks) -> None:
        logger.error(
            "undecodable job sent to the dead-letter topic",
            extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()},
        )
        self._send(
            topics.JOBS_DEAD,
            msg.value() or b"",
            msg.key(),
            acks,
            [
                ("error.type", b"undecodable"),
                ("error.message", reason.encode()[:4000]),
                ("source.topic", _tp(msg)[0].encode()),
            ],
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
