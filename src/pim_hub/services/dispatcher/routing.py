"""Routing: decoded jobs to their integration's lane; retries not due wait on their partition."""

from __future__ import annotations

import asyncio
import time

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pim_hub.runtime import metrics, tracing
from pim_hub.schemas import ordering
from pim_hub.schemas.errors import SchemaError
from pim_hub.schemas.events import Job
from pim_hub.services.dispatcher.acks import _Acks
from pim_hub.services.dispatcher.base import DispatcherBase
from pim_hub.services.dispatcher.core.guard import (
    parse_version,
)
from pim_hub.services.dispatcher.lane import _Lane
from pim_hub.services.dispatcher.work import (
    PARKED,
    PURGE_SETTLED_EVERY_S,
    TP,
    _offset,
    _tp,
    _Work,
    logger,
)


class RoutingMixin(DispatcherBase):
    """Records of a poll to lanes; due times of retries; the pending list of the cross-lane order."""

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
            headers = msg.headers()
            if headers:
                work.trace = tracing.carrier(headers) or None
                work.prev = ordering.prev_job(headers)
            routed.append(work)
        if total > self.stats.peak_buffered_bytes:
            self.stats.peak_buffered_bytes = total
        if not routed:
            return
        if self.options.order_hold_s > 0:
            # Written to the pending list before any can finish, but not on the poll loop's
            # time: one task writes what the polls route, in order, then hands it to lanes.
            self._registering.put_nowait(routed)
            if self._registrar is None or self._registrar.done():
                self._registrar = asyncio.create_task(self._registrar_loop(), name="registrar")
        else:
            self._submit(routed)

    def _submit(self, routed: list[_Work]) -> None:
        """Routed jobs to their integration's lane (of partitions still held)."""
        for work in routed:
            if work.tp not in self._parts:
                continue  # revoked or lost meanwhile: the new owner reads it again
            lane = self._lanes.get(work.job.integration_id)
            if lane is None:
                iid = work.job.integration_id
                lane = self._lanes[iid] = _Lane(self, iid)
            lane.submit(work)

    async def _registrar_loop(self) -> None:
        """Register what the polls routed (several polls at once when behind), then submit it."""
        while True:
            routed = await self._registering.get()
            while not self._registering.empty():
                routed = routed + self._registering.get_nowait()
            await self._register(routed)
            self._submit(routed)

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

    def _park_held(self) -> None:
        """The buffer is full: park the jobs of integrations whose circuit is open.

        Held in the buffer they would keep the dispatcher from reading anything else, so the
        other integrations of the same driver and priority would wait for that target too.
        Parked, they go to the longest retry tier (no attempt spent, `last_error` PARKED),
        their offsets are committed once the broker has them, and they are read back when the
        circuit closes (`release_retries`) or when due (then held and parked again while it
        is still open).
        """
        if not self.options.retry_delays_s:
            return
        now = time.monotonic()
        for lane in self._lanes.values():
            if lane.breaker.holding(now):
                works = lane.park()
                if works:
                    self._park(lane.integration_id, works)

    def _released(self, job: Job) -> bool:
        """Whether a retry not due yet failed (or was parked) before its integration's
        circuit last closed."""
        closed = self._closed_at.get(job.integration_id)
        if closed is not None and job.last_error == PARKED and job.not_before is not None:
            parked_at = job.not_before.timestamp() - self.options.retry_delays_s[-1]
            return parked_at <= closed
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
        now = time.monotonic()
        if now - self._settled_purged_at >= PURGE_SETTLED_EVERY_S:
            self._settled_purged_at = now
            try:
                await self._guard.purge_settled()
            except Exception as exc:
                logger.warning(
                    "could not delete old rows of the settled list; tried again later",
                    extra={"error": f"{type(exc).__name__}: {exc}"},
                )
