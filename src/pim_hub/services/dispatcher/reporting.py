"""Reporting: the status event of every job, and its retry or dead letter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from confluent_kafka import Message

from pim_hub.drivers.base import DeliveryResult
from pim_hub.runtime import metrics
from pim_hub.runtime.kafka import (
    Headers,
)
from pim_hub.schemas import topics
from pim_hub.services.dispatcher.acks import _Acks
from pim_hub.services.dispatcher.base import DispatcherBase
from pim_hub.services.dispatcher.core.guard import (
    GuardDecision,
)
from pim_hub.services.dispatcher.policy import classify
from pim_hub.services.dispatcher.work import (
    PARKED,
    _tp,
    _Work,
    logger,
)


class ReportingMixin(DispatcherBase):
    """Status events, retries and dead letters of finished jobs."""

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
            "operation": job.mutation.operation,
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

    def _park(self, integration_id: str, works: list[_Work]) -> None:
        """Jobs of an open circuit to the longest retry tier, no attempt spent (see
        RoutingMixin._park_held); each is finished once the broker has it."""
        delay = self.options.retry_delays_s[-1]
        topic = self.retry_topics[-1]
        due = datetime.now(UTC) + timedelta(seconds=delay)
        for w in works:
            record = {**w.job.to_record(), "not_before": due, "last_error": PARKED}
            self._busy[w.tp] += 1
            acks = _Acks(self, w.tp, w.offset, 1)
            self._send(topic, self.serde.encode("Job", record, topic=topic), w.key, acks, w.trace)
        self.stats.parked += len(works)
        metrics.DISPATCH_HELD.labels(self.driver_key, integration_id, self.priority, "parked").inc(
            len(works)
        )
        logger.warning(
            "buffer full while the circuit is open: jobs parked until it closes",
            extra={"integration": integration_id, "jobs": len(works), "topic": topic},
        )
        if self.options.order_hold_s > 0:
            # Off the pending list: they hold no other lane back while parked.
            task = asyncio.create_task(self._settle_apart(integration_id, works))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
