"""The dispatcher: one consumer group per driver and priority, delivering jobs through a driver."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from drivers.base import DeliveryResult, Driver, IntegrationContext
from drivers.discovery import DriverCatalogue, discover
from hub.integrations import Integration, list_integrations
from hub.kafka import AsyncProducer, consumer_config, make_producer
from hub.mapping import PostgresMappingService, open_pool
from hub.settings import Settings
from schemas import topics
from schemas.errors import SchemaError
from schemas.events import Job
from schemas.serde import Serde
from services.dispatcher.policy import classify

logger = logging.getLogger(__name__)


def _tp(msg: Message) -> tuple[str, int]:
    topic, partition = msg.topic(), msg.partition()
    assert topic is not None and partition is not None  # always set on a consumed record
    return topic, partition


def _offset(msg: Message) -> int:
    offset = msg.offset()
    assert offset is not None
    return offset


def group_id(driver: str, priority: str) -> str:
    """The consumer group of a driver and priority."""
    return f"hub.dispatch.{driver}.{priority}"


@dataclass
class _Bound:
    """An integration with its validated config and open driver."""

    integration: Integration
    driver: Driver
    context: IntegrationContext


@dataclass
class _Work:
    """One decoded job and where it came from."""

    msg: Message
    job: Job
    record: dict[str, Any]


@dataclass
class Stats:
    """Counters the dispatcher keeps for logs, tests and metrics."""

    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    undecodable: int = 0
    foreign: int = 0


class Dispatcher:
    """Consumes one priority's jobs (and due retries) for one driver; delivers; reports status."""

    def __init__(
        self,
        settings: Settings,
        driver_key: str,
        priority: str,
        catalogue: DriverCatalogue | None = None,
    ) -> None:
        self.settings = settings
        self.driver_key = driver_key
        self.priority = priority
        self.catalogue = catalogue or discover()
        self.driver_cls = self.catalogue.get(driver_key)
        topics.job_topic(priority)  # raises early on an unknown priority
        self.serde = Serde(settings.schema_registry_url)
        self.group = group_id(driver_key, priority)
        self.retry_topics = [topics.retry_topic(d) for d in settings.retry_delays_s]
        self.stats = Stats()
        self._bound: dict[str, _Bound] = {}
        self._loaded_at = 0.0
        self._paused: dict[tuple[str, int], float] = {}
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit, and leave the group."""
        self._stop.set()

    async def run(self) -> None:
        """Consume until stopped."""
        conf = consumer_config(self.settings, self.group, **{"max.poll.interval.ms": 300000})
        consumer = Consumer(conf)
        consumer.subscribe(
            [topics.job_topic(self.priority), *self.retry_topics],
            on_revoke=self._on_revoke,
        )
        producer = AsyncProducer(make_producer(self.settings))
        await producer.start()
        pool = await open_pool(self.settings.require_database())
        http = httpx.AsyncClient(timeout=30)
        self._pool, self._http, self._producer = pool, http, producer
        loop = asyncio.get_running_loop()
        logger.info("dispatcher started", extra={"group": self.group})
        try:
            while not self._stop.is_set():
                self._resume_due(consumer)
                msgs = await loop.run_in_executor(
                    None, consumer.consume, self.settings.dispatcher_batch_size, 0.2
                )
                if not msgs:
                    continue
                await self._handle_batch(consumer, msgs)
        finally:
            await producer.close()
            await loop.run_in_executor(None, consumer.close)
            for bound in self._bound.values():
                await bound.driver.close()
            await http.aclose()
            await pool.close()
            logger.info("dispatcher stopped", extra={"group": self.group})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._paused.pop((tp.topic, tp.partition), None)

    def _resume_due(self, consumer: Consumer) -> None:
        now = time.time()
        due = [tp for tp, at in self._paused.items() if at <= now]
        if due:
            consumer.resume([TopicPartition(t, p) for t, p in due])
            for tp in due:
                del self._paused[tp]

    async def _integrations(self) -> dict[str, _Bound]:
        """Integrations of this driver, reloaded every few seconds so changes apply live."""
        if time.monotonic() - self._loaded_at < self.settings.integrations_refresh_s:
            return self._bound
        rows = await asyncio.get_running_loop().run_in_executor(
            None, list_integrations, self.settings.require_database()
        )
        fresh: dict[str, _Bound] = {}
        for integ in rows:
            if integ.driver != self.driver_key:
                continue
            old = self._bound.get(integ.id)
            if old is not None and old.integration == integ:
                fresh[integ.id] = old
                continue
            if old is not None:
                await old.driver.close()
            driver = self.driver_cls()
            context = IntegrationContext(
                integration_id=integ.id,
                config=self.driver_cls.validate_config(integ.config),
                mapping=PostgresMappingService(self._pool, integ.id),
                http=self._http,
                logger=logging.getLogger(f"drivers.{self.driver_key}.{integ.id}"),
            )
            await driver.open(context)
            fresh[integ.id] = _Bound(integ, driver, context)
        for gone in set(self._bound) - set(fresh):
            await self._bound[gone].driver.close()
        self._bound = fresh
        self._loaded_at = time.monotonic()
        return fresh

    async def _handle_batch(self, consumer: Consumer, msgs: list[Message]) -> None:
        now = time.time()
        commit: dict[tuple[str, int], int] = {}
        held: set[tuple[str, int]] = set()
        work: list[_Work] = []
        acks: list[asyncio.Future[Message]] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    logger.warning("consumer error", extra={"error": str(err)})
                continue
            tp = _tp(msg)
            if tp in held:
                continue
            try:
                record = self.serde.decode("Job", msg.value(), topic=msg.topic())
                job = Job.model_validate(record)
            except (SchemaError, ValueError) as exc:
                # Nothing to deliver; keep the bytes with the reason, never drop them.
                self.stats.undecodable += 1
                acks.append(self._dead_letter_raw(msg, str(exc)))
                commit[tp] = _offset(msg) + 1
                continue
            if job.driver != self.driver_key or job.priority != self.priority:
                self.stats.foreign += 1  # another group's job on a shared topic
                commit[tp] = _offset(msg) + 1
                continue
            if job.not_before is not None and job.not_before.timestamp() > now:
                # Retry tiers are ordered by due time: wait on this partition without blocking
                # the others, and read this record again when it is due.
                consumer.seek(TopicPartition(tp[0], tp[1], _offset(msg)))
                consumer.pause([TopicPartition(tp[0], tp[1])])
                self._paused[tp] = job.not_before.timestamp()
                held.add(tp)
                continue
            work.append(_Work(msg, job, record))
            commit[tp] = _offset(msg) + 1
        if work:
            acks.extend(await self._deliver(work))
        # Offsets move only once every status, retry and dead letter is acknowledged.
        if acks:
            await asyncio.gather(*acks)
        if commit:
            offsets = [TopicPartition(t, p, o) for (t, p), o in commit.items()]
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: consumer.commit(offsets=offsets, asynchronous=False)
            )

    async def _deliver(self, work: list[_Work]) -> list[asyncio.Future[Message]]:
        bound = await self._integrations()
        # Per-entity order: one entity's jobs run one after another; entities run concurrently.
        groups: dict[str, list[_Work]] = defaultdict(list)
        for w in work:
            groups[f"{w.job.integration_id}|{w.job.mutation.entity_key}"].append(w)
        sem = asyncio.Semaphore(self.settings.dispatcher_max_in_flight)
        acks: list[asyncio.Future[Message]] = []

        async def run_group(items: list[_Work]) -> None:
            async with sem:
                for w in items:
                    acks.extend(await self._deliver_one(w, bound.get(w.job.integration_id)))

        await asyncio.gather(*(run_group(g) for g in groups.values()))
        return acks

    async def _deliver_one(self, w: _Work, b: _Bound | None) -> list[asyncio.Future[Message]]:
        job = w.job
        started = time.perf_counter()
        if b is None or not b.integration.enabled:
            result = DeliveryResult.skipped("integration disabled or removed")
        else:
            try:
                result = await b.driver.handle(job, b.context)
            except Exception as exc:  # noqa: BLE001 - a driver bug must not stop the group
                logger.exception("driver raised", extra={"job_id": job.job_id})
                result = DeliveryResult.retry(
                    f"driver raised {type(exc).__name__}: {exc}", kind="driver_exception"
                )
        duration_ms = (time.perf_counter() - started) * 1000
        disposition = classify(
            result.outcome,
            result.retryable,
            job.attempt,
            self.settings.dispatcher_max_attempts,
            self.settings.retry_delays_s,
            result.retry_after,
        )
        acks: list[asyncio.Future[Message]] = []
        status: str
        if disposition.action == "done":
            status = result.outcome
        elif disposition.action == "retry":
            status = "retrying"
            due = datetime.now(UTC) + timedelta(seconds=disposition.delay_s)
            retry = {
                **w.record,
                "attempt": job.attempt + 1,
                "not_before": due,
                "last_error": result.reason,
            }
            topic = self.retry_topics[disposition.tier]
            acks.append(
                self._producer.send_nowait(
                    topic, self.serde.encode("Job", retry, topic=topic), key=w.msg.key()
                )
            )
        else:
            status = "dead"
            dead = {**w.record, "last_error": result.reason}
            acks.append(
                self._producer.send_nowait(
                    topics.JOBS_DEAD,
                    self.serde.encode("Job", dead, topic=topics.JOBS_DEAD),
                    key=w.msg.key(),
                    headers=[
                        ("error.type", (result.error_kind or "failed").encode()),
                        ("error.message", (result.reason or "").encode()[:4000]),
                    ],
                )
            )
        self.stats.by_status[status] += 1
        status_record = {
            "job_id": job.job_id,
            "mutation_id": job.mutation.mutation_id,
            "integration_id": job.integration_id,
            "driver": job.driver,
            "entity_key": job.mutation.entity_key,
            "priority": job.priority,
            "status": status,
            "attempt": job.attempt,
            "error_kind": result.error_kind if status != "delivered" else None,
            "error_message": result.reason if status != "delivered" else None,
            "target_ref": result.target_ref,
            "duration_ms": duration_ms,
            "source_received_at": job.mutation.source_received_at,
            "occurred_at": datetime.now(UTC),
        }
        acks.append(
            self._producer.send_nowait(
                topics.DELIVERY_STATUS,
                self.serde.encode("DeliveryStatus", status_record, topic=topics.DELIVERY_STATUS),
                key=job.mutation.entity_key,
            )
        )
        logger.info(
            "job %s",
            status,
            extra={
                "job_id": job.job_id,
                "integration": job.integration_id,
                "entity_key": job.mutation.entity_key,
                "attempt": job.attempt,
                "topic": w.msg.topic(),
                "partition": w.msg.partition(),
                "offset": w.msg.offset(),
            },
        )
        return acks

    def _dead_letter_raw(self, msg: Message, reason: str) -> asyncio.Future[Message]:
        logger.error(
            "undecodable job sent to the dead-letter topic",
            extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()},
        )
        return self._producer.send_nowait(
            topics.JOBS_DEAD,
            msg.value(),
            key=msg.key(),
            headers=[
                ("error.type", b"undecodable"),
                ("error.message", reason.encode()[:4000]),
                ("source.topic", _tp(msg)[0].encode()),
            ],
        )
