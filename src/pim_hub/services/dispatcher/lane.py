"""A lane: the jobs of one integration, one queue per entity, sent in batches under the
integration's limits, its adaptive concurrency (AIMD) and its circuit breaker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from pim_hub.drivers.base import DeliveryResult
from pim_hub.registry.limits import (
    RateLimit,
    TokenBucket,
)
from pim_hub.runtime import metrics
from pim_hub.services.dispatcher.core.breaker import STATE_VALUES, CircuitBreaker, is_outage
from pim_hub.services.dispatcher.core.filling import keep_filling
from pim_hub.services.dispatcher.core.throttle import Aimd, is_throttled
from pim_hub.services.dispatcher.settings import DispatcherOptions
from pim_hub.services.dispatcher.work import TP, _Bound, _Work, logger


class LaneHost(Protocol):
    """What a lane needs of its dispatcher."""

    options: DispatcherOptions
    driver_key: str
    priority: str
    guard_slots: int
    locks_held: int
    batch_done: asyncio.Event
    circuit_changed: asyncio.Event
    _bound: dict[str, _Bound]
    _busy: dict[TP, int]
    _tasks: set[asyncio.Task[Any]]

    async def wait_batch_done(self) -> None: ...

    def _fail(self, reason: str) -> None: ...

    async def _deliver_batch(
        self, integration_id: str, batch: list[_Work], lane: _Lane
    ) -> dict[int, str]: ...

    def release_retries(self, integration_id: str) -> None: ...


class Slots:
    """The lane's driver calls at once, within a limit that moves (see core/throttle.py)."""

    def __init__(self, aimd: Aimd) -> None:
        self.aimd = aimd
        self.used = 0
        self.freed = asyncio.Event()

    async def acquire(self) -> None:
        while self.used >= self.aimd.current:
            self.freed.clear()
            await self.freed.wait()
        self.used += 1

    def release(self) -> None:
        self.used -= 1
        self.freed.set()

    def over(self) -> bool:
        """More calls at once than the limit allows now (it was lowered meanwhile)."""
        return self.used > self.aimd.current


class _Lane:
    """The jobs of one integration: per-entity queues, batching, limits."""

    def __init__(self, dispatcher: LaneHost, integration_id: str) -> None:
        self.d = dispatcher
        self.integration_id = integration_id
        self.chains: dict[str, deque[_Work]] = {}
        self.ready: deque[_Work] = deque()
        self.running = 0
        self.bucket = TokenBucket(None, 1)
        self.wake = asyncio.Event()
        self.throttle_lock = asyncio.Lock()
        self.aimd = Aimd(dispatcher.options.throttle, self.limit().concurrent)
        self.slots = Slots(self.aimd)
        self.call_s: float | None = None  # mean time of one driver call (job by job)
        self.lingered_at = float("-inf")  # when the pump last waited for a batch to fill
        # Adaptive filling of batches (core/filling.py): jobs made ready so far, whether the
        # last batch was full, and whether the next one already had its wait.
        self.arrived = 0
        self.last_full = False
        self.filled = False
        self.breaker = CircuitBreaker(dispatcher.options.breaker)
        self.kick = asyncio.Event()  # the breaker changed: a waiting pump looks again
        self.circuit_gauge = metrics.DISPATCH_CIRCUIT.labels(
            dispatcher.driver_key, integration_id, dispatcher.priority
        )
        self.circuit_gauge.set(STATE_VALUES["closed"])
        self.limit_gauge = metrics.DISPATCH_CONCURRENCY.labels(
            dispatcher.driver_key, integration_id, dispatcher.priority
        )
        self.limit_gauge.set(self.aimd.current)
        labels = (dispatcher.driver_key, integration_id, dispatcher.priority)
        self.opened_gauge = metrics.DISPATCH_CIRCUIT_OPENED.labels(*labels)
        self.opened_gauge.set(0)
        metrics.DISPATCH_OUTAGE_CEILING.labels(*labels).set(dispatcher.options.breaker.ceiling_s)
        self.ceiling_logged = False  # the WARNING that the outage ceiling passed, once an outage
        self.task = asyncio.create_task(self._pump(), name=f"lane-{integration_id}")

    def submit(self, w: _Work) -> None:
        chain = self.chains.get(w.chain)
        if chain is None:
            chain = self.chains[w.chain] = deque()
        chain.append(w)
        if len(chain) == 1:
            self._make_ready(w)

    def _make_ready(self, w: _Work) -> None:
        """w heads its entity's chain and may go: counted for filling, the pump woken."""
        w.state = "ready"
        self.ready.append(w)
        self.arrived += 1
        self.wake.set()

    def advance(self, w: _Work) -> None:
        """w is delivered (or settled): its entity's next job becomes ready."""
        chain = self.chains.get(w.chain)
        if chain and chain[0] is w:
            chain.popleft()
            if chain:
                self._make_ready(chain[0])
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

    def park(self) -> list[_Work]:
        """Take out every job not being delivered (its circuit is open), in entity order."""
        out: list[_Work] = []
        for ekey in list(self.chains):
            chain = self.chains[ekey]
            kept = deque(w for w in chain if w.state == "running")
            out.extend(w for w in chain if w.state != "running")
            if kept:
                self.chains[ekey] = kept
            else:
                del self.chains[ekey]
        self.ready = deque(w for w in self.ready if w.state == "running")
        for w in out:
            w.state = "parked"  # a pending requeue of a held one finds it gone
        return out

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
                if self.aimd.ceiling != max(1, limit.concurrent):
                    self.aimd.set_ceiling(limit.concurrent)
                    self.limit_gauge.set(self.aimd.current)
                concurrent = self.aimd.current  # the configured ceiling, or less if throttled
                bound = self.d._bound.get(self.integration_id)
                batching = bound is not None and bound.batching
                # Batching drivers: one request per batch, so batches are the requests.
                # Others: one batch more than the `concurrent` request slots, so a batch
                # recording and reporting overlaps the next one's requests; their requests
                # share the lane's semaphore. Every batch holds a guard connection: never
                # more batches than the dispatcher has guard connections.
                slots = min(concurrent + (0 if batching else 1), self.d.guard_slots)
                if self.running >= slots:
                    await self.d.wait_batch_done()
                    continue
                # Linger only while busy: an idle lane sends at once for low latency.
                if len(self.ready) < opts.batch_size and opts.linger_ms > 0 and self.running:
                    if batching and opts.batch_fill_ms > 0:
                        if not self.filled:
                            # A busy lane waits (bounded) for a fuller batch while more jobs
                            # come: under load, fewer and fuller requests. Once per batch:
                            # what is ready after the wait goes.
                            self.filled = True
                            await self._fill(opts.batch_size)
                            continue  # the slots, the lock budget and the ready jobs moved on
                    elif time.monotonic() - self.lingered_at >= opts.linger_ms / 1000:
                        # Once per linger period: what is ready after it goes out at once,
                        # spread over the free slots, not one batch per period (a short
                        # backlog would otherwise trickle out a few jobs every linger_ms).
                        await asyncio.sleep(opts.linger_ms / 1000)
                        self.lingered_at = time.monotonic()
                        continue  # the slots, the lock budget and the ready jobs moved on
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
                        quick = int(concurrent * opts.guard_batch_s / max(self.call_s, 1e-6))
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
                hold = self.aimd.wait(time.monotonic())
                if hold > 0:
                    # The target answered 429: nothing goes before its Retry-After.
                    await self._nap(hold)
                    continue
                now = time.monotonic()
                if not self.ceiling_logged and self.breaker.expired(now):
                    self.ceiling_logged = True
                    logger.warning(
                        "outage ceiling passed: the circuit holds the jobs no longer; they go "
                        "through the retry tiers to the dead-letter topic",
                        extra={
                            "integration": self.integration_id,
                            "priority": self.d.priority,
                            "ceiling_s": self.breaker.policy.ceiling_s,
                        },
                    )
                wait = self.breaker.probe_wait(now)
                if wait is not None:
                    if wait > 0:
                        # The target is down: the jobs wait here, no attempt spent, until
                        # the next probe is due or a probe's answer changes the state.
                        await self._nap(wait)
                        continue
                    size = 1  # the probe: one job, alone
                    self.circuit_gauge.set(STATE_VALUES["half_open"])
                    self.d.circuit_changed.set()
                batch = [self.ready.popleft() for _ in range(min(size, len(self.ready)))]
                self.filled = False
                self.last_full = len(batch) >= opts.batch_size
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

    async def _fill(self, want: int) -> None:
        """Wait for `want` jobs to be ready while `keep_filling` says more are coming.

        Woken by every job made ready (and when the lane's last call ends), and at least
        once per linger period to look at the rate again.
        """
        opts = self.d.options
        fill_s, window_s = opts.batch_fill_ms / 1000, opts.linger_ms / 1000
        started, arrived, backlog = time.monotonic(), self.arrived, self.last_full
        while True:
            waited = time.monotonic() - started
            if not keep_filling(
                ready=len(self.ready),
                want=want,
                running=self.running,
                waited_s=waited,
                fill_s=fill_s,
                window_s=window_s,
                arrived=self.arrived - arrived,
                backlog=backlog,
            ):
                return
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(window_s, fill_s - waited))

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
            if not self.running:
                self.wake.set()  # idle now: a batch waiting to fill goes at once
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

    def account(self, results: list[DeliveryResult], latency_s: float = 0.0) -> None:
        """The answers of the target to one batch's calls, in order, for the breaker and the
        concurrency limit (latency_s: how long each call took)."""
        br, before = self.breaker, self.breaker.state
        now = time.monotonic()
        moved = False
        for r in results:
            if is_outage(r.outcome, r.retryable, r.target_status, r.error_kind):
                br.failed(now, r.retry_after)
                continue
            # Any other answer says the target is up; a 429 asks for fewer calls at once.
            br.succeeded()
            if is_throttled(r.outcome, r.retryable, r.target_status):
                moved |= self.aimd.throttled(now, r.retry_after, now - latency_s)
            else:
                moved |= self.aimd.answered(now, latency_s)
        if moved:
            self.d.circuit_changed.set()
            self.limit_gauge.set(self.aimd.current)
            self.slots.freed.set()  # raised: waiting calls may go
        if br.state != before:
            self.d.circuit_changed.set()
            self.circuit_gauge.set(STATE_VALUES[br.state])
            if br.state == "closed":
                self.opened_gauge.set(0)
                self.ceiling_logged = False
            elif before == "closed" and br.opened_at is not None:
                # Wall clock, for the alert on the ceiling and `hub integrations show`.
                self.opened_gauge.set(time.time() - (now - br.opened_at))
        if br.state == before or {br.state, before} == {"open", "half_open"}:
            return  # a failed probe: still open, a longer wait
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
            logger.warning(
                "circuit closed: the target answers again; jobs resume",
                extra={"integration": self.integration_id, "priority": self.d.priority},
            )
            self.wake.set()
            self.d.release_retries(self.integration_id)

    def circuit_row(self, wall: Callable[[float | None], str | None]) -> dict[str, Any]:
        """The lane's circuit and concurrency now (times through `wall`: monotonic to ISO)."""
        br, aimd = self.breaker, self.aimd
        return {
            "integration_id": self.integration_id,
            "state": br.state,
            "opened_at": wall(br.opened_at),
            "last_probe": wall(br.last_probe),
            "next_probe": wall(br.next_probe) if br.state == "open" else None,
            "concurrency": aimd.current,
            "concurrency_max": aimd.ceiling,
            "throttled_until": wall(aimd.resume_at) if aimd.wait(time.monotonic()) > 0 else None,
        }

    def requeue(self, w: _Work) -> None:
        """A held job is ready again (unless handed back meanwhile)."""
        chain = self.chains.get(w.chain)
        if w.state == "held" and chain and chain[0] is w:
            self._make_ready(w)
