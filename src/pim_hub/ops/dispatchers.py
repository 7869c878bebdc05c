"""Which dispatchers the registered integrations need, and which of them are missing.

A job goes to the topic of its priority (`hub.jobs.<priority>`); only the consumer group
`hub.dispatch.<driver>.<priority>` delivers it. An integration therefore needs one dispatcher
per priority its jobs can reach, and a missing one leaves its jobs waiting without an error
anywhere. `needed_dispatchers` derives the needs from the integrations and the queue map
(no broker); `coverage` asks the broker whether each needed group has ever consumed its topic
and how many records wait for it. `hub integrations show|dispatchers` print both, and the lag
exporter serves them as `pimhub_dispatcher_uncovered_messages`.

Every enabled integration also needs a dispatcher on the bulk lane (`BULK_PRIORITY`, `low`),
whatever its live jobs reach: `hub replay` and `hub resync` put their jobs there by default, so
that a replay or a resync does not queue ahead of live price and stock changes on `immediate`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pim_hub.registry.model import Integration
from pim_hub.registry.priority import PriorityRules
from pim_hub.registry.queue_map import QueueMap
from pim_hub.schemas import topics
from pim_hub.schemas.entities import ENTITY_TYPES

#: The lane `hub replay` and `hub resync` publish to unless told otherwise (`--priority`).
BULK_PRIORITY = topics.BULK_PRIORITY

#: Entity types whose changes carry attribute values: attribute and price rules apply to them.
VALUE_ENTITY_TYPES = frozenset({"product", "product_model"})


def dispatch_group(driver: str, priority: str) -> str:
    """The consumer group of `hub dispatcher --driver D --priority P` (same as the service's)."""
    return f"hub.dispatch.{driver}.{priority}"


def handled_entity_types(integ: Integration) -> set[str]:
    """The entity types fan-out makes jobs of for an integration (as fan-out decides)."""
    supported = set(integ.driver_entity_types or ENTITY_TYPES)
    if integ.entity_types:
        supported &= set(integ.entity_types)
    return supported


def reachable_priorities(
    entity_types: Iterable[str], rules: PriorityRules, levels: Mapping[str, int]
) -> list[str]:
    """Every priority a job of these entity types can get under rules, most urgent first.

    An over-approximation on purpose: a rule counts when some change of a handled type could
    match it (attribute and price rules only for types with values), because a priority that
    is reachable but unserved is exactly the silent wait this module exists to report.
    """
    types = set(entity_types)
    reached: set[str] = set()
    for entity_type in types:
        reached.add(rules.entity_types.get(entity_type, rules.default))
    if types:
        reached.update(rules.operations.values())
        reached.update(rules.fields.values())
    if types & VALUE_ENTITY_TYPES:
        reached.update(rules.attributes.values())
        if rules.price_collections:
            reached.add(rules.price_collections)
    known = [p for p in reached if p in levels]
    if len(known) < len(reached) and levels:
        # resolve_priority falls back to the default (or the least urgent level) for names
        # the levels do not know.
        known.append(rules.default if rules.default in levels else max(levels, key=levels.get))  # type: ignore[arg-type]
    return sorted(set(known), key=lambda name: levels[name])


@dataclass(frozen=True)
class DispatcherNeed:
    """One dispatcher group that enabled integrations need."""

    driver: str
    priority: str
    topic: str
    integrations: tuple[str, ...]

    @property
    def group(self) -> str:
        """Its consumer group."""
        return dispatch_group(self.driver, self.priority)

    @property
    def command(self) -> str:
        """The command that runs it."""
        return f"hub dispatcher --driver {self.driver} --priority {self.priority}"


def integration_priorities(integ: Integration, queue_map: QueueMap) -> list[str]:
    """The priorities one integration's jobs can go to (its priority_map laid over the map)."""
    rules = queue_map.rules.merged(integ.priority_map or None)
    return reachable_priorities(handled_entity_types(integ), rules, queue_map.levels)


def needed_dispatchers(
    integrations: Iterable[Integration], queue_map: QueueMap, include_disabled: bool = False
) -> list[DispatcherNeed]:
    """The dispatcher groups the integrations need, by driver and priority.

    Besides the priorities an integration's live jobs can reach, the bulk lane (when the queue
    map has it): a replay or resync sends there by default, and without a dispatcher its jobs
    would wait unseen.
    """
    users: dict[tuple[str, str], list[str]] = {}
    for integ in integrations:
        if not integ.enabled and not include_disabled:
            continue
        priorities = integration_priorities(integ, queue_map)
        if BULK_PRIORITY in queue_map.levels and BULK_PRIORITY not in priorities:
            priorities.append(BULK_PRIORITY)
        for priority in priorities:
            users.setdefault((integ.driver, priority), []).append(integ.id)
    return [
        DispatcherNeed(driver, priority, queue_map.topic(priority), tuple(sorted(ids)))
        for (driver, priority), ids in sorted(
            users.items(), key=lambda kv: (kv[0][0], queue_map.levels[kv[0][1]])
        )
    ]


@dataclass
class Coverage:
    """What the broker says of one needed group."""

    need: DispatcherNeed
    #: partitions of the topic the group has committed an offset on
    committed_partitions: int = 0
    partitions: int = 0
    #: records on partitions the group never committed on: nobody has delivered them
    uncovered: int = 0
    #: records after the group's committed offsets
    lag: int = 0
    error: str | None = None
    ends: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def missing(self) -> bool:
        """No dispatcher of this group has ever consumed the topic, and records wait."""
        return self.error is None and self.committed_partitions == 0 and self.uncovered > 0

    @property
    def state(self) -> str:
        """A word for tables: ok, missing, idle (nothing consumed yet, nothing waiting), ?."""
        if self.error is not None:
            return "unknown"
        if self.missing:
            return "missing"
        if self.committed_partitions == 0:
            return "not started"
        return "running" if self.lag == 0 else "behind"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (for --output json and logs)."""
        return {
            "driver": self.need.driver,
            "priority": self.need.priority,
            "topic": self.need.topic,
            "group": self.need.group,
            "command": self.need.command,
            "integrations": list(self.need.integrations),
            "state": self.state,
            "committed_partitions": self.committed_partitions,
            "partitions": self.partitions,
            "uncovered_messages": self.uncovered,
            "lag_messages": self.lag,
            "error": self.error,
        }


#: Past this many records the listed end offset is trusted without reading to the end.
READ_TO_END_MAX = 1000


def _true_ends(
    consumer: Any, starts: dict[tuple[str, int], tuple[int, int]], timeout_s: float
) -> dict[tuple[str, int], int]:
    """The end offset of each partition, read to its end when it is near.

    Some brokers (the embedded Tansu) list the base offset of the last batch as the end, so
    a partition holding one batch would look empty; reading from the start position to the
    partition's end (bounded in records and time) corrects that.
    """
    from confluent_kafka import KafkaError, TopicPartition

    ends = {tp: high for tp, (_, high) in starts.items()}
    near = {tp: pos for tp, (pos, high) in starts.items() if high - pos <= READ_TO_END_MAX}
    if not near:
        return ends
    consumer.assign([TopicPartition(t, p, pos) for (t, p), pos in near.items()])
    open_ = set(near)
    deadline = time.monotonic() + timeout_s
    try:
        while open_ and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.1):
                tp = (msg.topic() or "", msg.partition() or 0)
                if tp not in ends:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        ends[tp] = max(ends[tp], msg.offset() or 0)
                        open_.discard(tp)
                    continue
                ends[tp] = max(ends[tp], (msg.offset() or 0) + 1)
    finally:
        consumer.unassign()
    return ends


def coverage(settings: Any, needs: list[DispatcherNeed], timeout_s: float = 10.0) -> list[Coverage]:
    """Ask the broker, for each needed group, what it consumed and what waits for it.

    A group with no committed offset on a partition never delivered its records (a new
    dispatcher starts from the earliest record), so every record there is `uncovered`.
    Broker errors are kept per group (`error`), never raised: this is a report.
    """
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    if not needs:
        return []
    admin = AdminClient(settings.kafka_config())
    # Reads by assignment only: it never subscribes, so it joins no group and commits nothing.
    consumer = Consumer(
        settings.kafka_config(
            {
                "group.id": "pim_hub.ops.dispatchers",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
    )
    results = [Coverage(need) for need in needs]
    try:
        marks: dict[tuple[str, int], tuple[int, int]] = {}
        partitions: dict[str, list[int]] = {}
        for topic in {n.topic for n in needs}:
            meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if meta is None or meta.error is not None:
                partitions[topic] = []
                continue
            partitions[topic] = sorted(meta.partitions)
            for p in meta.partitions:
                marks[(topic, p)] = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout_s, cached=False
                )
        ends = _true_ends(consumer, marks, min(timeout_s, 3.0))
        for cov in results:
            topic = cov.need.topic
            cov.partitions = len(partitions.get(topic, []))
            try:
                futures = admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(cov.need.group)], request_timeout=timeout_s
                )
                committed = {
                    tp.partition: tp.offset
                    for fut in futures.values()
                    for tp in fut.result().topic_partitions or []
                    if tp.topic == topic and tp.error is None and tp.offset >= 0
                }
            except Exception as exc:  # a group never seen may be an error on some brokers
                if "GROUP_ID_NOT_FOUND" not in str(exc) and "not found" not in str(exc).lower():
                    cov.error = str(exc)
                    continue
                committed = {}
            cov.committed_partitions = len(committed)
            for part in partitions.get(topic, []):
                low, _ = marks[(topic, part)]
                end = ends[(topic, part)]
                cov.ends[part] = end
                if part in committed:
                    cov.lag += max(0, end - committed[part])
                else:
                    cov.uncovered += max(0, end - low)
    except Exception as exc:  # the broker is unreachable: say so on every row
        for cov in results:
            cov.error = cov.error or str(exc)
    finally:
        consumer.close()
    return results
