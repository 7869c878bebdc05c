"""What the dispatcher's modules share: a job in flight, an integration bound to its driver,
the counters, the partition key type and a few constants."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import Message

from pim_hub.drivers.base import Driver, IntegrationContext
from pim_hub.registry.limits import (
    RateLimit,
)
from pim_hub.registry.model import Integration
from pim_hub.runtime import tracing
from pim_hub.schemas.events import Job

#: One name for the whole dispatcher's log records, whichever module writes them.
logger = logging.getLogger(f"{__package__}.app")

TP = tuple[str, int]

#: Attempts to record one delivery on its own after its batch's transaction failed.
RECORD_ATTEMPTS = 12

#: The `last_error` of a job parked while its integration's circuit was open (no attempt
#: spent): read back when the circuit closes, or when due.
PARKED = "parked: the integration's circuit was open"

#: How often a dispatcher deletes old rows of the settled list (dispatch_settled).
PURGE_SETTLED_EVERY_S = 600.0

#: How long librdkafka waits before fetching again for a partition whose prefetch queue was
#: full (see `Dispatcher.run`).
FETCH_QUEUE_BACKOFF_MS = 10


def group_id(driver: str, priority: str) -> str:
    """The consumer group of a driver and priority."""
    return f"hub.dispatch.{driver}.{priority}"


def _tp(msg: Message) -> TP:
    topic, partition = msg.topic(), msg.partition()
    assert topic is not None and partition is not None  # always set on a consumed record
    return topic, partition


def _offset(msg: Message) -> int:
    offset = msg.offset()
    assert offset is not None
    return offset


class _Work:
    """One decoded job, where it came from, and where it is in its lifecycle.

    Only the validated Job is kept, not the decoded record as well: a retry or dead letter
    (rare) rebuilds the record from it, and every buffered job costs half the objects
    (the collector walks them all on each full collection).
    """

    __slots__ = ("chain", "job", "key", "offset", "order_since", "prev", "state", "tp", "trace")

    def __init__(self, tp: TP, offset: int, key: bytes | None, job: Job) -> None:
        self.tp = tp
        self.offset = offset
        self.key = key
        self.job = job
        self.chain = job.mutation.entity_key  # the entity: one job of it at a time
        self.state = "queued"  # queued | ready | running | held | parked | finished
        #: The record's trace headers (`runtime.tracing`): passed on to its retry, dead
        #: letter and status, and the parent of its delivery's span.
        self.trace: tracing.TraceHeaders | None = None
        #: (id, epoch ms made) of the job of its entity and integration it must not overtake
        #: (record header pimhub.prev-job), and since when it waits for it (monotonic).
        self.prev: tuple[str, int] | None = None
        self.order_since: float | None = None


@dataclass
class Stats:
    """Counters the dispatcher keeps for logs, tests and benchmarks."""

    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    undecodable: int = 0
    foreign: int = 0
    driver_calls: int = 0
    #: Most encoded bytes of records buffered at once; partitions whose records of a poll
    #: went back to the broker because the budget was spent.
    peak_buffered_bytes: int = 0
    budget_returns: int = 0
    #: Times a job waited for an older job of its entity in another lane.
    held: int = 0
    #: Jobs of an integration whose circuit is open, parked on a retry topic so that they
    #: do not fill the buffer (see RoutingMixin._park_held).
    parked: int = 0

    @property
    def finished(self) -> int:
        """Jobs that reached a status (retrying included)."""
        return sum(self.by_status.values())


class _Bound:
    """An integration with its open driver, context and limits (or why it cannot run)."""

    def __init__(
        self,
        integration: Integration,
        driver: Driver | None,
        context: IntegrationContext | None,
        limit: RateLimit,
        broken: str | None = None,
        batching: bool = False,
    ) -> None:
        self.integration = integration
        self.driver = driver
        self.context = context
        self.limit = limit
        self.broken = broken
        self.batching = batching
