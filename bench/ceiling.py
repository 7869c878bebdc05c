"""The broker's ceiling: plain consume → JSON decode → produce passthrough, same messages."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]


def make_topics(bootstrap: str, names: list[str], partitions: int = 6) -> None:
    """Create fresh topics for one run."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        fut.result()


def fill(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Write the input messages once (not timed)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
    )
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def passthrough(
    bootstrap: str, source: str, target: str, count: int, timeout: float = 300
) -> float:
    """Consume `count` records, decode each as JSON, produce it on; return records/s."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench.ceiling.{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True, "acks": "all"}
    )
    consumer.subscribe([source])
    seen = 0
    started: float | None = None
    deadline = time.monotonic() + timeout
    while seen < count and time.monotonic() < deadline:
        msgs = consumer.consume(500, 0.5)
        if msgs and started is None:
            started = (
                time.perf_counter()
            )  # the clock starts at the first record, after the group join
        for msg in msgs:
            if msg.error():
                continue
            doc: Any = orjson.loads(msg.value() or b"null")
            while True:
                try:
                    producer.produce(target, value=orjson.dumps(doc), key=msg.key())
                    break
                except BufferError:
                    producer.poll(0.1)
            seen += 1
        producer.poll(0)
        if msgs:
            consumer.commit(asynchronous=True)
    producer.flush(60)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    if seen < count:
        raise RuntimeError(f"passthrough saw {seen} of {count} records")
    return seen / elapsed if elapsed > 0 else float("inf")


def run(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """Measure the ceiling for these messages on this broker."""
    tag = uuid.uuid4().hex[:8]
    source, target = f"bench.ceiling.in.{tag}", f"bench.ceiling.out.{tag}"
    make_topics(bootstrap, [source, target])
    fill(bootstrap, source, messages)
    rate = passthrough(bootstrap, source, target, len(messages))
    return {"passthrough_per_s": rate, "messages": float(len(messages))}
