"""Reading topics without a consumer group: true log ends, time lookups, scans.

The embedded Tansu broker answers ListOffsets(latest) with the base offset of the last record
batch plus one, not with the end of the log, and answers every offsets-for-times lookup with 0.
Fetch responses carry the right high watermark, so `log_bounds` reads the end from a fetch
(partition EOF) and `offsets_for_time` scans forward from the broker's answer; on Apache Kafka
both are exact from the start and the extra read is one record per partition.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)

from pim_hub.runtime.settings import Settings
from pim_hub.schemas.errors import PermanentError

logger = logging.getLogger(__name__)

TP = tuple[str, int]


class OffsetsError(PermanentError):
    """A topic, group or reset that cannot be handled as asked."""


class ReadStalled(OffsetsError):
    """The broker stopped returning records before the end of a partition."""


# --- reading without a group -----------------------------------------------------------------


def ephemeral_consumer(settings: Settings, purpose: str) -> Consumer:
    """A consumer that never joins or commits a group (its partitions are assigned by hand).

    Its group id is fresh and only set because librdkafka wants one; no offsets are ever
    committed under it, so reading with it moves no production group.
    """
    return Consumer(
        settings.kafka_config(
            {
                "group.id": f"hub.ops.{purpose}.{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
            }
        )
    )


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    """Partition numbers of a topic.

    Raises:
        OffsetsError: the topic does not exist.
    """
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise OffsetsError(f"topic {topic} does not exist (run `hub topics apply`)")
    return sorted(meta.partitions)


def _eof(msg: Message) -> bool:
    err = msg.error()
    return err is not None and err.code() == KafkaError._PARTITION_EOF


def _tp(msg: Message) -> TP:
    topic, partition = msg.topic(), msg.partition()
    assert topic is not None and partition is not None
    return topic, partition


def _offset(msg: Message) -> int:
    offset = msg.offset()
    assert offset is not None
    return offset


def log_bounds(
    consumer: Consumer, tps: Iterable[TP], timeout_s: float = 30.0
) -> dict[TP, tuple[int, int]]:
    """(first offset, end offset) of each partition, the end read from a fetch.

    The consumer's assignment is replaced.
    """
    tps = list(tps)
    bounds: dict[TP, tuple[int, int]] = {}
    probe: dict[TP, int] = {}
    for topic, p in tps:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        low = max(low, 0)
        if high <= low:
            bounds[(topic, p)] = (low, low)
        else:
            probe[(topic, p)] = low
            # The last batch starts at or after high - 1: reading from there to the EOF
            # finds the true end whatever the broker listed.
            bounds[(topic, p)] = (low, max(low, high - 1))
    if not probe:
        return bounds
    consumer.assign([TopicPartition(t, p, bounds[(t, p)][1]) for t, p in probe])
    todo = set(probe)
    deadline = time.monotonic() + timeout_s
    try:
        while todo:
            if time.monotonic() > deadline:
                raise ReadStalled(f"no end-of-partition seen for {sorted(todo)}")
            for msg in consumer.consume(1000, 0.2):
                if not _eof(msg):
                    if msg.error() is not None:
                        logger.warning("consumer error", extra={"error": str(msg.error())})
                    continue
                tp = _tp(msg)
                if tp in todo:
                    todo.discard(tp)
                    bounds[tp] = (probe[tp], max(_offset(msg), bounds[tp][1]))
    finally:
        consumer.unassign()
    return bounds


def scan(
    consumer: Consumer,
    ranges: Mapping[TP, tuple[int, int]],
    *,
    on_progress: Callable[[int], None] | None = None,
    stop_partition: Callable[[Message], bool] | None = None,
    stall_s: float = 30.0,
) -> Iterator[Message]:
    """Every record with start <= offset < end of each partition range, partition by partition
    in offset order (partitions interleave).

    Args:
        consumer: an ephemeral consumer (its assignment is replaced).
        ranges: (topic, partition) -> (start, end); empty ranges are skipped.
        on_progress: called with the number of offsets passed over (records and gaps).
        stop_partition: called on each record; True ends its partition (record not yielded).
        stall_s: how long the broker may return nothing before ReadStalled.
    """
    todo = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
    if not todo:
        return
    position = {tp: r[0] for tp, r in todo.items()}
    consumer.assign(
        [
            TopicPartition(t, p, start if start > 0 else OFFSET_BEGINNING)
            for (t, p), (start, _) in todo.items()
        ]
    )
    last_seen = time.monotonic()
    try:
        while todo:
            msgs = consumer.consume(500, 0.2)
            if not msgs and time.monotonic() - last_seen > stall_s:
                raise ReadStalled(f"nothing read for {stall_s:.0f}s from {sorted(todo)}")
            for msg in msgs:
                last_seen = time.monotonic()
                err = msg.error()
                if err is not None and not _eof(msg):
                    logger.warning("consumer error", extra={"error": str(err)})
                    continue
                tp = _tp(msg)
                if tp not in todo:
                    continue
                offset = _offset(msg)
                end = todo[tp][1]
                if _eof(msg):
                    # The log ends here (normally at `end`; earlier only if it was truncated).
                    _advance(position, tp, end, end, on_progress)
                    _finish(consumer, todo, tp)
                    continue
                if offset >= end:
                    _advance(position, tp, end, end, on_progress)
                    _finish(consumer, todo, tp)
                    continue
                if stop_partition is not None and stop_partition(msg):
                    _advance(position, tp, end, end, on_progress)
                    _finish(consumer, todo, tp)
                    continue
                _advance(position, tp, offset + 1, end, on_progress)
                yield msg
                if offset + 1 >= end:
                    _finish(consumer, todo, tp)
    finally:
        consumer.unassign()


def _advance(
    position: dict[TP, int],
    tp: TP,
    to: int,
    end: int,
    on_progress: Callable[[int], None] | None,
) -> None:
    to = min(to, end)
    if to > position[tp]:
        if on_progress is not None:
            on_progress(to - position[tp])
        position[tp] = to


def _finish(consumer: Consumer, todo: dict[TP, tuple[int, int]], tp: TP) -> None:
    todo.pop(tp, None)
    # Stop fetching a finished partition: the rest of the log is not ours to read.
    consumer.incremental_unassign([TopicPartition(tp[0], tp[1])])


def timestamp_ms(msg: Message) -> int | None:
    """The record's timestamp in epoch milliseconds, None when the broker has none."""
    kind, value = msg.timestamp()
    return value if kind != 0 and value >= 0 else None


def offsets_for_time(
    consumer: Consumer,
    bounds: Mapping[TP, tuple[int, int]],
    when: datetime,
) -> dict[TP, int]:
    """The first offset whose record timestamp is at or after `when`, per partition.

    The broker's answer is a lower bound; records before `when` are skipped by reading, so the
    result is exact also where the broker cannot look times up. No such record: the end.
    """
    ts = int(when.timestamp() * 1000)
    answer: dict[TP, int] = {}
    asked = [TopicPartition(t, p, ts) for (t, p), (lo, hi) in bounds.items() if hi > lo]
    for tp in consumer.offsets_for_times(asked, timeout=10) if asked else []:
        key = (tp.topic, tp.partition)
        lo, hi = bounds[key]
        answer[key] = hi if tp.offset < 0 else min(max(tp.offset, lo), hi)
    out = {tp: hi for tp, (lo, hi) in bounds.items() if hi <= lo}
    found: dict[TP, int] = {}

    def at_or_after(msg: Message) -> bool:
        stamp = timestamp_ms(msg)
        if stamp is not None and stamp >= ts:
            found[_tp(msg)] = _offset(msg)
            return True
        return False

    for _ in scan(
        consumer, {tp: (answer[tp], bounds[tp][1]) for tp in answer}, stop_partition=at_or_after
    ):
        pass
    for key in answer:
        out[key] = found.get(key, bounds[key][1])
    return out
