"""The hub's producers send a key to the partition Java, Faust and aiokafka clients choose."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from pim_hub.runtime.kafka import apply_topics, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.topics import TopicSpec

pytestmark = pytest.mark.integration


def test_keyed_records_land_where_murmur2_puts_them(hub_settings: Settings, unique: str) -> None:
    # Faust (aiokafka) produces mutations and jobs; the hub's confluent producers write
    # snapshots, retries and redrives of the same keys: both must agree on the partition.
    topic = f"test.partitioning.{unique}"
    apply_topics(hub_settings, [TopicSpec(topic, hub_settings.topic_partitions, -1)])
    producer = make_producer(hub_settings)
    landed: dict[bytes, int] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        landed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    keys = [f"product:{unique}-{i}".encode() for i in range(60)]
    for key in keys:
        producer.produce(topic, b"{}", key=key, on_delivery=delivered)
    assert producer.flush(30) == 0
    partitions = list(range(hub_settings.topic_partitions))
    expected = {key: DefaultPartitioner()(key, partitions, partitions) for key in keys}
    assert landed == expected
    assert len(set(landed.values())) > 1  # the keys really spread: not all on one partition
