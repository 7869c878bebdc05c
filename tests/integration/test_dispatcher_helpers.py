"""Helpers of the dispatcher tests: job builders, status watchers and test drivers (no tests)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import REGISTRY
from pydantic import BaseModel

from pim_hub.devstack.fixtures import change as change
from pim_hub.devstack.fixtures import job_record as job_record
from pim_hub.devstack.fixtures import version as version
from pim_hub.drivers.base import DeliveryResult, Driver, IntegrationContext
from pim_hub.drivers.discovery import DriverCatalogue, discover
from pim_hub.drivers.webhook.driver import ALL_ENTITY_TYPES, WebhookConfig, WebhookDriver
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime.kafka import consumer_config, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.events import Job
from pim_hub.schemas.serde import Serde

SERDE = Serde()


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


class WebhookObservedDriver(WebhookTestDriver):
    """The test driver under a key the observability test alone uses: its dispatcher groups
    (hub.dispatch.webhook_obs.*) hold no member or offset of any other test."""

    key: ClassVar[str] = "webhook_obs"


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


def enabled_integration(
    database_url: str, driver: type[Driver], unique: str, config: dict[str, Any] | None = None
) -> str:
    """The test's enabled integration `it-<unique>` of `driver`; its id."""
    integration = f"it-{unique}"
    add_integration(database_url, catalogue_with(driver), integration, driver.key, config or {})
    return integration


def numbered_jobs(
    integration: str, driver: str, unique: str, n: int, entities: int | None = None
) -> list[dict[str, Any]]:
    """Jobs 0 to n-1 of one integration on the low lane (tests that read hub.jobs.normal from
    its start never see them): job i sets `n` to i at version(i), on `product:<i><unique>`, or
    on `product:<i % entities><unique>` when `entities` is given (each entity's in order)."""
    return [
        job_record(
            integration,
            driver,
            "low",
            f"product:{i % entities if entities else i}{unique}",
            [change("n", i)],
            version(i),
        )
        for i in range(n)
    ]


def lane_sample(name: str, driver: str, integration: str, **labels: str) -> float | None:
    """A metric of one integration's low lane in this process's registry (None: not set)."""
    return REGISTRY.get_sample_value(
        name, {"driver": driver, "integration": integration, "priority": "low", **labels}
    )


def produce_jobs(
    settings: Settings,
    records: list[dict[str, Any]],
    headers: dict[str, list[tuple[str, str | bytes | None]]] | None = None,
) -> None:
    """Publish jobs to their priority topics, keyed like the mutator does; wait for acks.

    `headers`: job id -> the record headers of that job.
    """
    producer = make_producer(settings)
    for rec in records:
        topic = topics.job_topic(rec["priority"])
        key = f"{rec['integration_id']}|{rec['mutation']['entity_key']}"
        extra = (headers or {}).get(rec["job_id"])
        producer.produce(topic, SERDE.encode("Job", rec, topic=topic), key=key, headers=extra)
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
