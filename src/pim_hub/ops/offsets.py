"""`hub offsets`: consumer groups' positions, and resetting them.

Two broker facts shape this module (both checked against the embedded Tansu broker; the
second is about groups, the first shapes `pim_hub.runtime.logread`, which this builds on):

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from pim_hub.runtime.kafka import admin_client
from pim_hub.runtime.logread import (
    TP,
    OffsetsError,
    ephemeral_consumer,
    log_bounds,
    offsets_for_time,
    partitions_of,
)
from pim_hub.runtime.settings import Settings

logger = logging.getLogger(__name__)


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


class GroupActive(OffsetsError):
    """The group has active members: its offsets must not be changed under them."""


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


ResetKind = Literal["earliest", "latest", "datetime", "offset", "shift"]


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
        if self.kind == "shift":
            return f"committed offset {self.offset:+d}"
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
        elif target.kind == "shift":
            # Like kafka-consumer-groups --shift-by: from the committed offset (the log start
            # when nothing is committed), kept inside the log.
            assert target.offset is not None
            wanted = (p.start if p.committed is None else p.committed) + target.offset
            new = min(max(wanted, p.start), p.end)
            if new != wanted:
                note = f"clamped to the log [{p.start}, {p.end}]"
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
