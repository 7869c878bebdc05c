"""Helpers of the dispatcher tests: job builders, status watchers and test drivers (no tests)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from confluent_kafka import Consumer, TopicPartition
from pydantic import BaseModel

from drivers.base import DeliveryResult, Driver, IntegrationContext
from drivers.discovery import DriverCatalogue, discover
from drivers.webhook.driver import ALL_ENTITY_TYPES, WebhookConfig, WebhookDriver
from hub.integrations import Integration, upsert_integration
from hub.kafka import consumer_config, make_producer
from hub.settings import Settings
from schemas import topics
from schemas.events import Job
from schemas.serde import Serde

SERDE = Serde()
EXTRA_DRIVERS = "webhook_test=tests.integration.test_dispatcher_helpers:WebhookTestDriver"


class WebhookTestConfig(WebhookConfig):
    """The webhook config plus a delay before each POST (a slow target)."""

    delay_s: float = 0.0


class WebhookTestDriver(WebhookDriver):
    """The webhook driver under its own key, so the shared pipeline's dispatchers ignore it."""

    key: ClassVar[str] = "webhook_test"
    config_model: ClassVar[type[BaseModel]] = WebhookTestConfig

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Wait, then POST like the webhook driver."""
        assert isinstance(context.config, WebhookTestConfig)
        if context.config.delay_s:
            await asyncio.sleep(context.config.delay_s)
        return await super().handle(job, context)


class RecordingConfig(BaseModel):
    """Nothing to configure."""

    note: str = ""


class RecordingDriver(Driver):
    """In-process test driver: records calls, answers from a per-entity script."""

    name: ClassVar[str] = "Recording"
    key: ClassVar[str] = "recording"
    version: ClassVar[str] = "0"
    description: ClassVar[str] = "test driver"
    supported_entity_types: ClassVar[frozenset[str]] = ALL_ENTITY_TYPES
    config_model: ClassVar[type[BaseModel]] = RecordingConfig
    script: ClassVar[dict[str, list[DeliveryResult]]]
    calls: ClassVar[list[tuple[float, Job]]]
    delay_s: ClassVar[float] = 0.0
    active: ClassVar[dict[str, list[int]]]  # integration -> [current, max] concurrent calls

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Record the call, answer the next scripted result (default delivered)."""
        cls = type(self)
        active = cls.active.setdefault(job.integration_id, [0, 0])
        active[0] += 1
        active[1] = max(active[1], active[0])
        try:
            cls.calls.append((time.monotonic(), job))
            if cls.delay_s:
                await asyncio.sleep(cls.delay_s)
            queue = cls.script.get(job.mutation.entity_key)
            return queue.pop(0) if queue else DeliveryResult.delivered()
        finally:
            active[0] -= 1


def recording_driver(key: str) -> type[RecordingDriver]:
    """A fresh RecordingDriver class with its own key and state."""
    return type(
        f"Recording_{key}",
        (RecordingDriver,),
        {"key": key, "script": {}, "calls": [], "active": {}},
    )


def catalogue_with(*classes: type[Driver]) -> DriverCatalogue:
    """The installed drivers plus the test ones."""
    cat = discover()
    for cls in classes:
        cat.drivers[cls.key] = cls
    return cat


def add_integration(
    url: str, catalogue: DriverCatalogue, integration_id: str, driver: str, config: dict[str, Any]
) -> None:
    """Create an enabled integration."""
    upsert_integration(
        url, catalogue, Integration(integration_id, integration_id, driver, True, config, None, {})
    )


def change(attribute: str, value: Any, locale: str | None = None) -> dict[str, Any]:
    """A Change record of one attribute value."""
    return {
        "field": "values",
        "attribute": attribute,
        "locale": locale,
        "scope": None,
        "old": None,
        "new": orjson.dumps(value).decode(),
        "added": None,
        "removed": None,
    }


def version(second: int) -> str:
    """A source version: a fixed day plus some seconds."""
    return datetime.fromtimestamp(1_700_000_000 + second, UTC).isoformat()


def job_record(
    integration_id: str,
    driver: str,
    priority: str,
    entity_key: str,
    changes: list[dict[str, Any]],
    source_version: str | None,
    operation: str = "update",
    mode: str = "live",
    job_id: str | None = None,
) -> dict[str, Any]:
    """A Job record ready for the serde."""
    now = datetime.now(UTC)
    mutation_id = str(uuid.uuid4())
    return {
        "job_id": job_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{mutation_id}/{integration_id}")),
        "mutation": {
            "mutation_id": mutation_id,
            "entity_type": entity_key.split(":", 1)[0],
            "entity_key": entity_key,
            "operation": operation,
            "changes": changes,
            "state": None,
            "version": source_version,
            "causation_id": mutation_id,
            "correlation_id": None,
            "origin": "external",
            "source_received_at": now,
            "created_at": now,
        },
        "integration_id": integration_id,
        "driver": driver,
        "priority": priority,
        "attempt": 1,
        "mode": mode,
        "not_before": None,
        "last_error": None,
        "created_at": now,
    }


def produce_jobs(settings: Settings, records: list[dict[str, Any]]) -> None:
    """Publish jobs to their priority topics, keyed like the mutator does; wait for acks."""
    producer = make_producer(settings)
    for rec in records:
        topic = topics.job_topic(rec["priority"])
        key = f"{rec['integration_id']}|{rec['mutation']['entity_key']}"
        producer.produce(topic, SERDE.encode("Job", rec, topic=topic), key=key)
        producer.poll(0)
    assert producer.flush(30) == 0


class TopicWatcher:
    """Reads a topic from its end at creation time, in a thread, keeping decoded records."""

    def __init__(
        self, settings: Settings, topic: str, event: str | None, accept: Callable[[Any], bool]
    ):
        self.records: list[Any] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.consumer = Consumer(consumer_config(settings, f"test-watch-{uuid.uuid4().hex}"))
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        assignment = []
        for p in meta.partitions:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assignment.append(TopicPartition(topic, p, high))
        self.consumer.assign(assignment)
        self.event, self.accept = event, accept
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self.consumer.consume(500, 0.1):
                if msg.error() is not None:
                    continue
                value: Any = (
                    SERDE.decode(self.event, msg.value())
                    if self.event
                    else (msg.value(), dict(msg.headers() or []))
                )
                if self.accept(value):
                    with self.lock:
                        self.records.append(value)
        self.consumer.close()

    def snapshot(self) -> list[Any]:
        """The records so far."""
        with self.lock:
            return list(self.records)

    def wait(self, check: Callable[[list[Any]], bool], timeout: float, what: str) -> list[Any]:
        """Wait until check(records) holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = self.snapshot()
            if check(recs):
                return recs
            time.sleep(0.05)
        raise AssertionError(f"{what} not reached in {timeout}s ({len(self.snapshot())} records)")

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self.thread.join(5)


def status_watcher(settings: Settings, integration_id: str) -> TopicWatcher:
    """Delivery statuses of one integration from now on."""
    return TopicWatcher(
        settings,
        topics.DELIVERY_STATUS,
        "DeliveryStatus",
        lambda r: r["integration_id"] == integration_id,
    )


def final_statuses(statuses: list[dict[str, Any]]) -> dict[str, str]:
    """Latest status per job id, in topic order."""
    return {s["job_id"]: s["status"] for s in statuses}
