"""An asynchronous commit the broker refuses is sent again at the next commit."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, TopicPartition

from pim_hub.runtime.settings import Settings
from pim_hub.services.dispatcher.app import Dispatcher
from pim_hub.services.dispatcher.core.offsets import PartitionOffsets


@dataclass
class Committed:
    topic: str
    partition: int
    offset: int
    error: KafkaError | None


def test_a_refused_commit_is_forgotten_so_it_is_sent_again() -> None:
    dispatcher = Dispatcher(Settings(kafka_bootstrap="127.0.0.1:9"), "webhook", "normal")
    refused, fine = PartitionOffsets(), PartitionOffsets()
    refused.committed_at(41)
    fine.committed_at(7)
    dispatcher._parts[("hub.jobs.normal", 0)] = refused
    dispatcher._parts[("hub.jobs.normal", 1)] = fine

    # What librdkafka hands the callback: each partition with its own error, if any.
    bad = Committed("hub.jobs.normal", 0, 41, KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    ok = Committed("hub.jobs.normal", 1, 7, None)
    dispatcher._on_commit(None, [bad, ok])  # type: ignore[list-item]
    assert refused.committed is None  # commit_point() offers it again
    assert fine.committed == 7

    fine.committed_at(9)
    dispatcher._on_commit(
        KafkaError(KafkaError._TRANSPORT), [TopicPartition("hub.jobs.normal", 1, 9)]
    )
    assert fine.committed is None
