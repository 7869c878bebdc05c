"""Support of the ingest integration tests (no tests here): private topics, reading back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from pim_hub.runtime.kafka import apply_topics, consumer_config
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.topics import TopicSpec


def new_topic(settings: Settings, prefix: str, partitions: int = 3) -> str:
    """A topic of this test only."""
    name = f"test.{prefix}.{uuid.uuid4().hex[:8]}"
    apply_topics(settings, [TopicSpec(name, partitions, 3_600_000)])
    return name


def read_all(settings: Settings, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    """Every record of a topic, once at least `expected` arrived (or timeout) plus a short drain."""
    consumer = Consumer(consumer_config(settings, f"test.read.{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            out += [m for m in consumer.consume(500, 0.3) if m.error() is None]
            if len(out) >= expected:
                # Anything beyond `expected` (a wrong duplicate) must be seen too.
                out += [m for m in consumer.consume(500, 1.0) if m.error() is None]
                break
    finally:
        consumer.close()
    return out


def read_matching(
    settings: Settings,
    topic: str,
    match: Callable[[Any], bool],
    expected: int,
    timeout: float = 20.0,
) -> list[Any]:
    """Records of a shared topic for which `match` holds, once `expected` arrived (or timeout)."""
    consumer = Consumer(consumer_config(settings, f"test.read.{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expected:
            out += [m for m in consumer.consume(500, 0.3) if m.error() is None and match(m)]
        out += [m for m in consumer.consume(500, 0.5) if m.error() is None and match(m)]
    finally:
        consumer.close()
    return out


def snapshots(records: list[Any]) -> list[dict[str, Any]]:
    """Decoded Snapshot records."""
    serde = Serde()
    return [serde.decode("Snapshot", m.value()) for m in records]
