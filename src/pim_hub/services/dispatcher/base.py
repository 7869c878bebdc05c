"""The dispatcher's state and lifecycle basics, shared by its parts (see app.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, Message
from psycopg_pool import AsyncConnectionPool

from pim_hub.drivers.base import DeliveryResult, Driver
from pim_hub.drivers.discovery import DriverCatalogue, discover
from pim_hub.runtime import metrics
from pim_hub.runtime.kafka import (
    AsyncProducer,
)
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde
from pim_hub.services.dispatcher.acks import _Acks
from pim_hub.services.dispatcher.core.guard import (
    GuardDecision,
)
from pim_hub.services.dispatcher.core.offsets import PartitionOffsets
from pim_hub.services.dispatcher.guard_store import GuardStore
from pim_hub.services.dispatcher.lane import _Lane
from pim_hub.services.dispatcher.settings import DispatcherOptions
from pim_hub.services.dispatcher.sources import foreign_fields
from pim_hub.services.dispatcher.work import TP, Stats, _Bound, _Work, group_id, logger


class DispatcherBase:
    """The dispatcher's state, its lifecycle basics, and what one part calls of another.

    Each part of the dispatcher (rebalance, flow, routing, integrations, delivery, reporting)
    is a mixin over this class; `app.Dispatcher` puts them together. The methods below that
    raise NotImplementedError are defined by a part and called by another.
    """

    # Opened by `Dispatcher.run`.
    _producer: AsyncProducer
    _pool: AsyncConnectionPool[Any]
    _guard: GuardStore
    _guard_free: asyncio.Semaphore
    _http: Any

    def __init__(
        self,
        settings: Settings,
        driver_key: str,
        priority: str,
        catalogue: DriverCatalogue | None = None,
        options: DispatcherOptions | None = None,
    ) -> None:
        self.settings = settings
        # Sources' clocks (HUB_SOURCES): fields another source owns are guarded on their own.
        self._foreign = foreign_fields(settings.ownership())
        self.options = options or DispatcherOptions.from_settings(settings)
        self.driver_key = driver_key
        self.priority = priority
        self.catalogue = catalogue or discover()
        self.driver_cls = self.catalogue.get(driver_key)
        # A driver that overrides handle_batch gets whole batches (one call per batch);
        # otherwise the dispatcher calls handle() for each job of a batch concurrently. A
        # driver whose batching depends on its config says so per integration (_bind).
        self.batching = self.driver_cls.handle_batch is not Driver.handle_batch
        topics.job_topic(priority)  # raises early on an unknown priority
        self.serde = Serde(settings.registry_config())
        self.group = group_id(driver_key, priority)
        self.retry_topics = [topics.retry_topic(d) for d in self.options.retry_delays_s]
        self.stats = Stats()
        self.failure: str | None = None
        self._bound: dict[str, _Bound] = {}
        self._retired: list[Driver] = []
        self._loaded_at = float("-inf")
        self._lanes: dict[str, _Lane] = {}
        self._parts: dict[TP, PartitionOffsets] = {}
        self._not_due: dict[TP, float] = {}
        #: When each integration's circuit last closed (wall clock): its earlier retries are due.
        self._closed_at: dict[str, float] = {}
        self._backpressured: set[TP] = set()
        #: The consumer's fetch wait (set when it is made), and retry partitions fetching
        #: since (monotonic), and when to look for idle ones next.
        self._fetch_wait_s = 0.0
        self._retry_awake: dict[TP, float] = {}
        self._retry_rest_check_at = 0.0
        #: Routed jobs waiting to be written to the pending list (cross-lane order), in poll
        #: order, and the task that writes them and then hands them to their lanes.
        self._registering: asyncio.Queue[list[_Work]] = asyncio.Queue()
        self._registrar: asyncio.Task[None] | None = None
        #: When this dispatcher last deleted old rows of the settled list (monotonic; 0: never).
        self._settled_purged_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy: dict[TP, int] = defaultdict(int)  # started, outputs not yet acknowledged
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._observers: dict[tuple[str, str, str | None], metrics.JobSeries] = {}
        self._last_commit = 0.0
        #: Acknowledgements served off the loop thread, and whether the loop is woken for them.
        self._acked: deque[tuple[_Acks, KafkaError | None, Message]] = deque()
        self._ack_wake = False
        #: Mean encoded size of a job record (moving), to size polls to the byte budget.
        self._record_bytes = 1000.0
        #: Guard transactions (batches) at once, over all lanes: one more than the requests
        #: in flight (see _Lane._pump), at most 8.
        self.guard_slots = max(1, min(self.options.max_in_flight + 1, 8))
        #: Jobs in batches started and not finished, over all lanes: the advisory locks
        #: their guard transactions hold (or will), kept within `options.guard_locks`.
        self.locks_held = 0
        #: Set whenever a batch finishes: pumps waiting for a slot or for lock room look again.
        self.batch_done = asyncio.Event()
        #: Set when a lane's circuit or concurrency changes: its row is written at once.
        self.circuit_changed = asyncio.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    async def wait_batch_done(self) -> None:
        """Until some batch (of any lane) finishes."""
        self.batch_done.clear()
        await self.batch_done.wait()

    def stop(self) -> None:
        """Stop taking work, finish or hand back what is in flight, commit, leave the group."""
        self._stop.set()

    def _take_acks(self) -> None:
        # Cleared before the queue is read: an acknowledgement queued meanwhile either is
        # read below or wakes the loop again.
        self._ack_wake = False
        acked = self._acked
        while acked:
            acks, err, msg = acked.popleft()
            acks.settle(err, msg)

    def _fail(self, reason: str) -> None:
        # The broker refused a write or something unexpected broke: stop without committing
        # the affected offsets, so a restart reads those jobs again.
        if self.failure is None:
            self.failure = reason
            logger.error("dispatcher failing", extra={"reason": reason})
        self._stop.set()

    # ---- defined by the parts ----------------------------------------------------------------

    def buffered_bytes(self) -> int:
        raise NotImplementedError  # flow.FlowMixin

    async def _integrations(self, force: bool = False) -> dict[str, _Bound]:
        raise NotImplementedError  # integrations.IntegrationsMixin

    async def _deliver_batch(
        self, integration_id: str, batch: list[_Work], lane: _Lane
    ) -> dict[int, str]:
        raise NotImplementedError  # delivery.DeliveryMixin

    def release_retries(self, integration_id: str) -> None:
        raise NotImplementedError  # routing.RoutingMixin

    def _report(
        self,
        w: _Work,
        result: DeliveryResult,
        decision: GuardDecision | None,
        duration_ms: float,
        now: datetime,
    ) -> metrics.JobSeries:
        raise NotImplementedError  # reporting.ReportingMixin

    def _dead_letter_raw(self, msg: Message, reason: str, acks: _Acks) -> None:
        raise NotImplementedError  # reporting.ReportingMixin

    def _park(self, integration_id: str, works: list[_Work]) -> None:
        raise NotImplementedError  # reporting.ReportingMixin

    async def _settle_apart(self, integration_id: str, batch: list[_Work]) -> None:
        raise NotImplementedError  # delivery.DeliveryMixin
