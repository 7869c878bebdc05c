"""consume_ready: a lone record is handed over at once, a backlog still in full batches."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from pim_hub.runtime.kafka import (
    apply_topics,
    consume_ready,
    consumer_config,
    make_producer,
)
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.topics import TopicSpec

pytestmark = pytest.mark.integration

#: What a batch may wait for its first record: librdkafka's own consume(n, timeout) waits
#: that long whenever fewer than n records come.
TIMEOUT_S = 8.0


def test_a_lone_record_comes_at_once_and_a_backlog_in_full_batches(
    hub_settings: Settings, unique: str
) -> None:
    topic = f"test.consume-ready.{unique}"
    apply_topics(hub_settings, [TopicSpec(topic, 1, -1)])
    producer = make_producer(hub_settings)
    consumer = Consumer(consumer_config(hub_settings, f"test.consume-ready.{unique}"))
    consumer.subscribe([topic])
    try:
        # Joined and caught up (nothing yet): an empty wait returns empty after its timeout.
        deadline = time.monotonic() + 60
        while not consumer.assignment() and time.monotonic() < deadline:
            assert consume_ready(consumer, 500, 0.5) == []

        producer.produce(topic, b"lone", key="k")
        producer.flush(10)
        started = time.monotonic()
        got = consume_ready(consumer, 500, TIMEOUT_S)
        took = time.monotonic() - started
        assert [m.value() for m in got] == [b"lone"]
        assert took < TIMEOUT_S / 2, took  # not the whole timeout, as consume(500, ...) takes

        for i in range(300):
            producer.produce(topic, str(i).encode(), key="k")
        producer.flush(10)
        time.sleep(1.0)  # fetched meanwhile (fetch.wait.max.ms is 50)
        batches: list[int] = []
        values: list[bytes] = []
        while len(values) < 300 and len(batches) < 300:
            batch = consume_ready(consumer, 500, TIMEOUT_S)
            batches.append(len(batch))
            values += [m.value() or b"" for m in batch]
        assert values == [str(i).encode() for i in range(300)]
        # What was fetched comes together, not one record per call.
        assert len(batches) <= 5, batches
        assert consume_ready(consumer, 1, 0.2) == []
    finally:
        consumer.close()
