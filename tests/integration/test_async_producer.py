"""AsyncProducer: acknowledgements reach the event loop in order per key, failures surface."""

from __future__ import annotations

import asyncio

import pytest

from pim_hub.runtime.kafka import AsyncProducer, DeliveryFailed, apply_topics, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.topics import TopicSpec

pytestmark = pytest.mark.integration


def test_every_record_is_acknowledged_in_order_per_key(hub_settings: Settings, unique: str) -> None:
    topic = f"test.async-producer.{unique}"
    apply_topics(hub_settings, [TopicSpec(topic, 3, -1)])

    async def main() -> list[tuple[int, int]]:
        producer = AsyncProducer(make_producer(hub_settings))
        await producer.start()
        try:
            futures = [
                producer.send_nowait(topic, str(i).encode(), key=f"k{i % 5}") for i in range(2000)
            ]
            acked = await asyncio.wait_for(asyncio.gather(*futures), 30)
            one = await asyncio.wait_for(producer.send(topic, b"last", key="k0"), 10)
        finally:
            await producer.close()
        assert one.value() == b"last"
        return [(m.partition() or 0, m.offset() or 0) for m in acked]

    positions = asyncio.run(main())
    assert len(positions) == 2000
    assert len(set(positions)) == 2000  # each record has its own place in the log
    # Records of one key are written in the order they were sent.
    for k in range(5):
        mine = [positions[i] for i in range(k, 2000, 5)]
        assert len({p for p, _ in mine}) == 1
        offsets = [o for _, o in mine]
        assert offsets == sorted(offsets)


def test_an_unreachable_broker_fails_the_send() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9")

    async def main() -> None:
        producer = AsyncProducer(make_producer(settings, **{"message.timeout.ms": 500}))
        await producer.start()
        try:
            with pytest.raises(DeliveryFailed):
                await asyncio.wait_for(producer.send("any.topic", b"x", key="k"), 10)
        finally:
            await producer.close(timeout=1)

    asyncio.run(main())
