"""The mutator's table recovery reads changelog ends from the log, not the listed end."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from faust.types import TP

from pim_hub.runtime.kafka import admin_client, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.services.mutator.app import _true_ends, make_app
from pim_hub.services.mutator.settings import MutatorSettings

pytestmark = pytest.mark.integration


def _topic_with_two_batches(settings: Settings) -> str:
    """A one-partition topic holding a batch of 5 records, then a batch of 3 (end 8)."""
    name = f"test.mutator-rebalance.{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(timeout=30)
    producer = make_producer(settings)
    for batch in (5, 3):
        for i in range(batch):
            producer.produce(name, value=f"{batch}-{i}".encode(), partition=0)
        assert producer.flush(30) == 0
    return name


def test_changelog_ends_are_read_from_the_log(hub_settings: Settings) -> None:
    name = _topic_with_two_batches(hub_settings)
    listed_consumer = Consumer(
        hub_settings.kafka_config({"group.id": f"test.{uuid.uuid4().hex[:8]}"})
    )
    try:
        _, listed = listed_consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=10)
    finally:
        listed_consumer.close()
    # The embedded broker lists the last batch's base offset + 1 (6), Apache Kafka lists 8:
    # either way the recovery end must be the true one.
    assert listed in (6, 8)
    assert _true_ends(hub_settings, [TP(name, 0)]) == {TP(name, 0): 8}


def test_the_faust_consumer_reports_true_highwaters(hub_settings: Settings, tmp_path: Path) -> None:
    name = _topic_with_two_batches(hub_settings)

    async def main() -> dict[TP, int]:
        # Built inside the running loop: Faust binds its services to the current loop.
        consumer = make_app(hub_settings, MutatorSettings(data_dir=str(tmp_path))).consumer
        await consumer.start()
        try:
            return dict(await consumer.highwaters(TP(name, 0)))
        finally:
            await consumer.stop()

    assert asyncio.run(main()) == {TP(name, 0): 8}
