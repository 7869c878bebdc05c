"""The byte budget of buffered jobs: counted per record; once spent, polls take nothing."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from pim_hub.runtime.settings import Settings
from pim_hub.services.dispatcher.app import Dispatcher
from pim_hub.services.dispatcher.core.offsets import PartitionOffsets
from pim_hub.services.dispatcher.settings import DispatcherOptions


class FakeConsumer:
    """Records what the dispatcher pauses and resumes."""

    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)


def test_partition_offsets_count_the_bytes_of_open_records() -> None:
    part = PartitionOffsets()
    part.take(1, 100)
    part.take(2, 50)
    part.take(2, 70)  # read again: its size replaces the first one
    assert part.open_bytes == 170
    part.done(1)
    part.done(1)  # a second acknowledgement releases nothing more
    assert part.open_bytes == 70
    part.skip(3)  # another group's record costs nothing
    part.done(2)
    assert part.open_bytes == 0
    assert part.in_flight() == 0


def _dispatcher(**options: int) -> Dispatcher:
    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    opts = DispatcherOptions.from_settings(settings, **options)
    return Dispatcher(settings, "webhook", "normal", options=opts)


def test_a_spent_budget_polls_nothing_and_pauses_nothing() -> None:
    # Pausing would make librdkafka drop what it has fetched: the budget only stops polls.
    d = _dispatcher(max_buffered_bytes=1000, max_buffered=100)
    a, b, c = (("hub.jobs.normal", p) for p in range(3))
    for tp in (a, b, c):
        d._parts[tp] = PartitionOffsets()
    d._parts[a].take(0, 600)
    d._parts[b].take(0, 401)
    consumer = FakeConsumer()

    d._apply_backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.paused == set()
    assert d._poll_size() == 0

    d._parts[b].done(0)  # 400 bytes of room
    assert d._poll_size() > 0
    d._resume(consumer)  # type: ignore[arg-type]
    assert consumer.paused == set()


def test_the_record_count_still_pauses_one_partition() -> None:
    d = _dispatcher(max_buffered_bytes=10**9, max_buffered=4)
    a, b = ("hub.jobs.normal", 0), ("hub.jobs.normal", 1)
    d._parts[a], d._parts[b] = PartitionOffsets(), PartitionOffsets()
    for off in range(4):
        d._parts[a].take(off, 10)
    d._parts[b].take(0, 10)
    consumer = FakeConsumer()
    d._apply_backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.paused == {a}
    d._parts[a].done(0)
    d._resume(consumer)  # type: ignore[arg-type]
    assert consumer.paused == {a}  # 3 in flight: more than half of 4
    d._parts[a].done(1)
    d._resume(consumer)  # type: ignore[arg-type]
    assert consumer.paused == set()


def test_polls_ask_for_no_more_records_than_the_budget_has_room_for() -> None:
    d = _dispatcher(max_buffered_bytes=100_000, poll_records=500)
    d._parts[("hub.jobs.normal", 0)] = PartitionOffsets()
    d._record_bytes = 10.0
    assert d._poll_size() == 500
    d._record_bytes = 2_000.0
    assert d._poll_size() == 50
    d._parts[("hub.jobs.normal", 0)].take(0, 99_000)
    assert d._poll_size() == 1  # any room: one record, which may exceed the budget
    d._parts[("hub.jobs.normal", 0)].take(1, 5_000)
    assert d._poll_size() == 0  # spent: nothing until batches finish


def test_the_prefetch_queue_is_capped_and_refilled_at_once() -> None:
    options = DispatcherOptions(max_buffered_bytes=8 * 2**20)
    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    conf = Dispatcher(settings, "webhook", "normal", options=options).consumer_conf()
    assert conf["queued.max.messages.kbytes"] == 8 * 1024
    # librdkafka's default (1 s) left the lanes without work for most of each second once
    # the queue had been full; the refill must come well within a batch's time.
    assert conf["fetch.queue.backoff.ms"] <= 50
