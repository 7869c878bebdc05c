"""Reading topics without a group (true log ends, time lookups) and `hub offsets` for groups.

Two broker facts shape this module (both checked against the embedded Tansu broker):

- Tansu answers ListOffsets(latest) with the base offset of the last record batch plus one,
  not with the end of the log, and answers every offsets-for-times lookup with 0. Fetch
  responses carry the right high watermark, so `log_bounds` reads the end from a fetch
  (partition EOF) and `offsets_for_time` scans forward from the broker's answer; on Apache
  Kafka both are exact from the start and the extra read is one record per partition.
- Tansu's DescribeGroups reports a state (Stable while a member is joined, Empty after it
  left) but never lists members. A group counts as active when its state is not Empty/Dead
  or it lists members, and a reset is applied as an offset commit by a non-member, which the
  coordinator refuses (UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION) while
  the group has members: the refusal holds even if a member joins after the preview.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from hub.kafka import admin_client
from hub.settings import Settings

logger = logging.getLogger(__name__)

TP = tuple[str, int]

#: Group states in which the coordinator has (or is admitting) members.
ACTIVE_STATES = frozenset({"STABLE", "PREPARING_REBALANCE", "COMPLETING_REBALANCE"})
#: Commit errors by which the coordinator says the group has members.
ACTIVE_GROUP_ERRORS = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


class OffsetsError(Exception):
    """A topic, group or reset that cannot be handled as asked."""


class GroupActive(OffsetsError):
    """The group has active members: its offsets must not be changed under them."""


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


# --- consumer groups -------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    """A group's position on one partition."""

    topic: str
    partition: int
    committed: int | None  # None: nothing committed
    start: int
    end: int

    @property
    def lag(self) -> int:
        """Records between the committed offset (or the log start) and the end."""
        return max(0, self.end - (self.committed if self.committed is not None else self.start))


@dataclass
class GroupView:
    """What `hub offsets GROUP` shows."""

    group: str
    state: str
    members: int
    partitions: list[PartitionLag] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """True while the group has (or is admitting) members."""
        return self.members > 0 or self.state in ACTIVE_STATES

    @property
    def total_lag(self) -> int:
        """Sum of the partitions' lag."""
        return sum(p.lag for p in self.partitions)

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "group": self.group,
            "state": self.state,
            "members": self.members,
            "active": self.active,
            "total_lag": self.total_lag,
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "start": p.start,
                    "end": p.end,
                    "lag": p.lag,
                }
                for p in self.partitions
            ],
        }


def group_state(settings: Settings, group: str) -> tuple[str, int]:
    """(state name, member count) of a group as the coordinator describes it."""
    admin = admin_client(settings)
    try:
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    except KafkaException as exc:
        raise OffsetsError(f"cannot describe group {group}: {exc}") from exc
    state = getattr(described.state, "name", str(described.state)).upper()
    return state, len(described.members or [])


def committed_offsets(settings: Settings, group: str) -> dict[TP, int]:
    """Every offset the group has committed."""
    admin = admin_client(settings)
    request = [ConsumerGroupTopicPartitions(group)]
    try:
        result = admin.list_consumer_group_offsets(request, request_timeout=10)[group].result()
    except KafkaException as exc:
        raise OffsetsError(f"cannot read the offsets of group {group}: {exc}") from exc
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in result.topic_partitions or []
        if tp.offset >= 0 and tp.error is None
    }


def describe_group(settings: Settings, group: str, topic_names: Iterable[str] = ()) -> GroupView:
    """Committed offsets, log ends and lag of a group (on its topics, or the ones given)."""
    state, members = group_state(settings, group)
    committed = committed_offsets(settings, group)
    wanted = list(topic_names) or sorted({t for t, _ in committed})
    consumer = ephemeral_consumer(settings, "offsets")
    try:
        tps = [(t, p) for t in wanted for p in partitions_of(consumer, t)]
        bounds = log_bounds(consumer, tps)
    finally:
        consumer.close()
    view = GroupView(group, state, members)
    for tp in tps:
        start, end = bounds[tp]
        view.partitions.append(PartitionLag(tp[0], tp[1], committed.get(tp), start, end))
    return view


ResetKind = Literal["earliest", "latest", "datetime", "offset"]


@dataclass(frozen=True)
class ResetTarget:
    """Where to move a group: the log start, its end, a time, or one offset."""

    kind: ResetKind
    when: datetime | None = None
    offset: int | None = None

    def describe(self) -> str:
        """Human-readable target."""
        if self.kind == "datetime":
            assert self.when is not None
            return f"first record at or after {self.when.isoformat()}"
        if self.kind == "offset":
            return f"offset {self.offset}"
        return self.kind


@dataclass(frozen=True)
class ResetRow:
    """One partition of a reset plan."""

    topic: str
    partition: int
    current: int | None
    new: int
    note: str = ""

    @property
    def change(self) -> int | None:
        """How far the offset moves (negative: records are read again)."""
        return None if self.current is None else self.new - self.current


def plan_offsets(
    partitions: Iterable[PartitionLag],
    target: ResetTarget,
    time_offsets: Mapping[TP, int] | None = None,
) -> list[ResetRow]:
    """The new offset of each partition (pure: the log bounds and time lookups are given).

    An explicit offset outside a partition's log is clamped to it, with a note.
    """
    rows = []
    for p in partitions:
        note = ""
        if target.kind == "earliest":
            new = p.start
        elif target.kind == "latest":
            new = p.end
        elif target.kind == "datetime":
            if time_offsets is None or (p.topic, p.partition) not in time_offsets:
                raise OffsetsError(f"no time lookup for {p.topic}[{p.partition}]")
            new = time_offsets[(p.topic, p.partition)]
        else:
            assert target.offset is not None
            new = min(max(target.offset, p.start), p.end)
            if new != target.offset:
                note = f"clamped to the log [{p.start}, {p.end}]"
        rows.append(ResetRow(p.topic, p.partition, p.committed, new, note))
    return rows


def plan_reset(
    settings: Settings,
    group: str,
    target: ResetTarget,
    topic_names: Iterable[str] = (),
    partitions: Iterable[int] = (),
) -> tuple[GroupView, list[ResetRow]]:
    """The group as it is and where a reset would move it (nothing is changed).

    Raises:
        OffsetsError: the group has no committed offsets and no topic was named.
    """
    view = describe_group(settings, group, topic_names)
    chosen = set(partitions)
    parts = [p for p in view.partitions if not chosen or p.partition in chosen]
    if not parts:
        raise OffsetsError(
            f"group {group} has no committed offsets"
            + (" on the chosen partitions" if chosen else "; name the topic with --topic")
        )
    time_offsets = None
    if target.kind == "datetime":
        assert target.when is not None
        consumer = ephemeral_consumer(settings, "offsets")
        try:
            time_offsets = offsets_for_time(
                consumer, {(p.topic, p.partition): (p.start, p.end) for p in parts}, target.when
            )
        finally:
            consumer.close()
    return view, plan_offsets(parts, target, time_offsets)


def execute_reset(settings: Settings, group: str, rows: list[ResetRow]) -> None:
    """Commit the planned offsets for the group, unless it has active members.

    Raises:
        GroupActive: the coordinator reports members, or refused the commit because of them.
    """
    state, members = group_state(settings, group)
    if members or state in ACTIVE_STATES:
        raise GroupActive(
            f"group {group} is {state.lower()} with {members or 'unlisted'} member(s);"
            " stop its consumers first"
        )
    # A commit by a consumer that never joined carries no generation: the coordinator accepts
    # it only for a group without members, so a consumer starting meanwhile makes it fail.
    consumer = Consumer(settings.kafka_config({"group.id": group, "enable.auto.commit": False}))
    try:
        result = consumer.commit(
            offsets=[TopicPartition(r.topic, r.partition, r.new) for r in rows],
            asynchronous=False,
        )
    except KafkaException as exc:
        err = exc.args[0]
        if isinstance(err, KafkaError) and err.code() in ACTIVE_GROUP_ERRORS:
            raise GroupActive(
                f"group {group} has active members (the coordinator refused: {err.name()});"
                " stop its consumers first"
            ) from exc
        raise OffsetsError(f"commit for group {group} failed: {exc}") from exc
    finally:
        consumer.close()
    failed = [tp for tp in result or [] if tp.error is not None]
    if failed:
        raise OffsetsError(
            "commit refused for "
            + ", ".join(f"{t.topic}[{t.partition}]: {t.error}" for t in failed)
        )
