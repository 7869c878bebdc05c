"""Guarded delivery: lock, read, decide, call the driver, record, in one transaction a batch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from time import monotonic as clock
from typing import Any

from psycopg import OperationalError
from psycopg_pool import PoolTimeout

from pim_hub.drivers.base import DeliveryResult, Driver, IntegrationContext
from pim_hub.runtime import metrics, tracing
from pim_hub.schemas.events import Job
from pim_hub.services.dispatcher.base import DispatcherBase
from pim_hub.services.dispatcher.core.breaker import is_outage
from pim_hub.services.dispatcher.core.guard import (
    FORCE_MODES,
    GuardDecision,
    decide,
    parse_version,
)
from pim_hub.services.dispatcher.core.throttle import is_throttled
from pim_hub.services.dispatcher.guard_store import SETTLED_RETENTION_S, Recording
from pim_hub.services.dispatcher.lane import _Lane
from pim_hub.services.dispatcher.work import (
    RECORD_ATTEMPTS,
    _Bound,
    _Work,
    logger,
)


class DeliveryMixin(DispatcherBase):
    """One batch through the version guard and the driver."""

    # ---- delivery ---------------------------------------------------------------------------

    async def _deliver_batch(
        self, integration_id: str, batch: list[_Work], lane: _Lane
    ) -> dict[int, str]:
        """Guard, deliver, record and report one batch of distinct entities of one integration.

        Returns the indexes of the jobs held back, and why: not reported, to be tried again
        (order: an older job of their entity is pending in another lane; circuit: the
        target is down; throttle: the target answered 429; guard: the database is away).
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
        prevs = [w.prev[0] for w in batch if w.prev is not None] if order else None
        async with (
            self._guard_free,
            self._guard.reading(b.integration.id, keys, job_ids, order, prevs) as (
                txn,
                stored,
                delivered,
            ),
        ):
            send: list[tuple[int, Job, GuardDecision]] = []
            older = txn.pending_older
            for i, w in enumerate(batch):
                m = w.job.mutation
                if prevs and w.prev is not None and self._before_prev(w, txn.settled, hold_s):
                    held[i] = "order"  # the job it must not overtake has not finished
                    continue
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
                    foreign=self._foreign,
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
                out: list[DeliveryResult | None]
                traced = tracing.enabled()
                if b.batching:
                    await lane.throttle(1)
                    t0 = clock()
                    with tracing.batch_stage(
                        "dispatcher.deliver_batch",
                        [batch[i].trace for i, _, _ in send],
                        {"integration": b.integration.id},
                    ):
                        out = [
                            *await self._call(b, b.driver.handle_batch(jobs, b.context), len(jobs))
                        ]
                else:
                    driver, context = b.driver, b.context
                    done: list[DeliveryResult | None] = [None] * len(jobs)
                    todo = iter(range(len(jobs)))
                    slots, limited = lane.slots, lane.bucket.rate is not None

                    async def worker() -> None:
                        # A few workers per batch rather than a task per job; each holds one
                        # of the lane's call slots (its concurrency, lowered while the target
                        # throttles) while it calls the driver for one job after another (a
                        # slot taken per job cost more than a quick driver's call). The
                        # driver is awaited directly: a wrapper coroutine per job cost more.
                        await slots.acquire()
                        try:
                            for k in todo:
                                now = clock()
                                if (
                                    lane.breaker.state == "open" and lane.breaker.holding(now)
                                ) or lane.aimd.wait(now) > 0:
                                    # The circuit opened or the target said 429 meanwhile:
                                    # the rest are not sent (they wait in the lane).
                                    continue
                                if slots.over():
                                    # The limit was lowered: give the slot back, wait for one.
                                    slots.release()
                                    await slots.acquire()
                                if limited:
                                    await lane.throttle(1)
                                t0 = clock()
                                try:
                                    if traced:
                                        r = await self._traced(
                                            driver, jobs[k], context, batch[send[k][0]]
                                        )
                                    else:
                                        r = await driver.handle(jobs[k], context)
                                except Exception as exc:
                                    r = self._raised(b, exc)
                                done[k] = r
                                # Each answer counts at once, so a target that went down
                                # or throttles stops this batch's other calls too.
                                lane.account([r], clock() - t0)
                        finally:
                            slots.release()

                    workers = min(len(jobs), lane.aimd.current)
                    began = time.perf_counter()
                    if workers == 1:
                        await worker()
                    else:
                        await asyncio.gather(*(worker() for _ in range(workers)))
                    # What one call takes (waits for the lane's slots and tokens included).
                    took = (time.perf_counter() - began) * workers / len(jobs)
                    lane.call_s = took if lane.call_s is None else 0.7 * lane.call_s + 0.3 * took
                    out = done
                if b.batching:
                    lane.account([r for r in out if r is not None], clock() - t0)
                # Past the outage ceiling the circuit holds nothing: failures are reported.
                circuit_open = lane.breaker.holding(clock())
                rows = []
                for (i, job, dec), result in zip(send, out, strict=True):
                    if result is None:
                        # Not called: the circuit opened, or the target throttled, before
                        # its turn.
                        held[i] = "throttle" if lane.aimd.wait(clock()) > 0 else "circuit"
                        continue
                    if is_throttled(result.outcome, result.retryable, result.target_status):
                        # The target asks for fewer requests: the job waits in its lane for
                        # the lane's hold (Retry-After) to pass, no attempt spent.
                        held[i] = "throttle"
                        continue
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
                # Finished jobs (whatever their outcome) stop holding other lanes back; those
                # not recorded as delivered here join the settled list.
                finished = [i for i in range(len(batch)) if i not in held]
                txn.settle(
                    [(batch[i].job.mutation.entity_key, batch[i].job.job_id) for i in finished],
                    [batch[i].job.job_id for i in finished if i not in recording],
                )

    def _before_prev(self, w: _Work, settled: set[str], hold_s: float) -> bool:
        """Whether `w` must still wait for the job it names (per-entity order across lanes).

        It waits while that job has not finished, for at most `hold_s` from its first wait:
        a predecessor that never comes (a lane without a dispatcher, a record lost to
        retention) delays its entity by that much, then `w` goes on and the version guard
        keeps an older value from overwriting it when the older job arrives.
        """
        assert w.prev is not None
        prev_id, made_ms = w.prev
        if prev_id in settled:
            return False
        if made_ms < (time.time() - SETTLED_RETENTION_S) * 1000:
            return False  # made before the settled list's retention: long finished
        now = clock()
        if w.order_since is None:
            w.order_since = now
        if now - w.order_since < hold_s:
            return True
        logger.warning(
            "a job no longer waits for the older job of its entity it names: that one did"
            " not finish within the order hold",
            extra={
                "integration": w.job.integration_id,
                "entity_key": w.job.mutation.entity_key,
                "job_id": w.job.job_id,
                "waited_for": prev_id,
                "order_hold_s": hold_s,
            },
        )
        metrics.DISPATCH_ORDER_GIVEN_UP.labels(
            self.driver_key, w.job.integration_id, self.priority
        ).inc()
        w.prev = None  # said once; a retry of this job does not wait again
        return False

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
