"""Dispatcher options: hub settings (HUB_DISPATCHER_*) plus knobs with sane defaults."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.services.dispatcher.core.breaker import BreakerPolicy
from pim_hub.services.dispatcher.core.throttle import ThrottlePolicy


@dataclass(frozen=True)
class DispatcherOptions:
    """How one dispatcher process consumes, batches and delivers.

    Attributes:
        batch_size: most jobs handed to one `handle_batch` call (HUB_DISPATCHER_BATCH_SIZE).
        guard_batch_size: most jobs of a driver called job by job that share one guard
            transaction, reached while its calls are quick (a batch's calls take about
            `guard_batch_s`); never fewer than batch_size nor more than `guard_locks`.
        guard_locks: most advisory locks this dispatcher's open guard transactions hold at
            once (every job of a batch holds one). PostgreSQL's lock table is shared by every
            dispatcher: `max_locks_per_transaction` x `max_connections`, 6,400 by default.
            Quick calls get a few big batches, slow ones up to 8 smaller ones.
        guard_batch_s: how long the calls of one such batch should take at most.
        linger_ms: how long a batch waits to fill up (HUB_DISPATCHER_LINGER_MS); 0: never
            (and no batch_fill_ms either).
        batch_fill_ms: how long a batch for `handle_batch` waits at most to fill up to
            batch_size on a busy lane, while jobs keep coming or after a full batch
            (HUB_DISPATCHER_BATCH_FILL_MS; core/filling.py); 0: only linger_ms. An idle
            lane never waits.
        max_in_flight: concurrent driver calls per integration unless its config's
            `rate_limit.concurrent` says otherwise (HUB_DISPATCHER_MAX_IN_FLIGHT).
        max_attempts: attempts before a retryable failure is dead (HUB_DISPATCHER_MAX_ATTEMPTS).
        shutdown_timeout_s: SIGTERM drain budget (HUB_DISPATCHER_SHUTDOWN_TIMEOUT_S).
        retry_delays_s: retry tiers (HUB_RETRY_DELAYS_S).
        poll_records: most records taken per poll.
        max_buffered: records of one partition in the dispatcher before it is paused.
        max_buffered_bytes: encoded bytes of the records in the dispatcher (taken, not yet
            finished), over all its partitions, before its polls take nothing more (its
            partitions are not paused: librdkafka would drop what it has prefetched). A decoded job costs a few times its encoded size (a
            creation's job: the full state plus one change per value), so this bounds the
            process's memory whatever the backlog; librdkafka's prefetch queue is held to the
            same figure.
        commit_interval_s: how often acknowledged offsets are committed.
        guard_synchronous_commit: whether a guard transaction's COMMIT waits for PostgreSQL
            to flush its WAL. On by default, so the guard's promise holds even across a
            PostgreSQL server crash; off is faster, and what a server crash can then lose is
            discussed in `GuardStore`.
        order_hold_s: per-entity order across priority lanes (HUB_DISPATCHER_ORDER_HOLD_S):
            a job waits while an older job of its entity and integration is pending under
            another priority, for at most this long after that job was read; 0 turns the
            ordering (and the bookkeeping it costs) off.
        order_recheck_s: how soon a job held for that reason is tried again.
        guard_retry_s: how long a batch waits before it is tried again when the version
            guard's database is unreachable (a restart): no attempt is spent meanwhile.
        breaker: when an integration's circuit opens (consecutive outage failures:
            HUB_DISPATCHER_BREAKER_THRESHOLD, 0: never) and how often it probes its target
            (HUB_DISPATCHER_BREAKER_PROBE_MAX_S at most), and how long an outage holds the
            jobs at most (HUB_DISPATCHER_OUTAGE_CEILING_S); see core/breaker.py.
        throttle: how an integration's concurrency follows a throttling target (429 answers,
            calls slower than HUB_DISPATCHER_THROTTLE_LATENCY_S); see core/throttle.py.
    """

    batch_size: int = 50
    guard_batch_size: int = 400
    guard_locks: int = 800
    guard_batch_s: float = 0.25
    linger_ms: int = 20
    batch_fill_ms: int = 250
    max_in_flight: int = 8
    max_attempts: int = 4
    shutdown_timeout_s: float = 20.0
    retry_delays_s: tuple[int, ...] = topics.RETRY_DELAYS_S
    poll_records: int = 500
    # Memory is bounded by bytes: a decoded job takes 10-15 times its encoded size (a
    # creation's job: 2-10 KB encoded, the full state and one change per value), so 4 MB
    # encoded is about 60 MB decoded, and still 400 such jobs for 8 bulk batches of 50. The
    # count only bounds what a rebalance hands back: small jobs (0.5 KB) need a few thousand
    # buffered to keep 8 guard batches of 100 fed while paused partitions fetch again.
    max_buffered: int = 2000
    max_buffered_bytes: int = 4 * 2**20
    commit_interval_s: float = 0.2
    guard_synchronous_commit: bool = True
    order_hold_s: float = 60.0
    order_recheck_s: float = 0.2
    guard_retry_s: float = 1.0
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DispatcherOptions:
        """Options from the hub settings, with overrides (tests, benchmarks)."""
        base = cls(
            batch_size=settings.dispatcher_batch_size,
            linger_ms=settings.dispatcher_linger_ms,
            batch_fill_ms=settings.dispatcher_batch_fill_ms,
            max_in_flight=settings.dispatcher_max_in_flight,
            max_attempts=settings.dispatcher_max_attempts,
            shutdown_timeout_s=settings.dispatcher_shutdown_timeout_s,
            retry_delays_s=tuple(settings.retry_delays_s),
            guard_synchronous_commit=settings.dispatcher_guard_synchronous_commit,
            max_buffered_bytes=settings.dispatcher_max_buffered_bytes,
            order_hold_s=settings.dispatcher_order_hold_s,
            breaker=BreakerPolicy(
                threshold=settings.dispatcher_breaker_threshold,
                probe_min_s=settings.dispatcher_breaker_probe_min_s,
                probe_max_s=settings.dispatcher_breaker_probe_max_s,
                ceiling_s=settings.dispatcher_outage_ceiling_s,
            ),
            throttle=ThrottlePolicy(latency_s=settings.dispatcher_throttle_latency_s),
        )
        return replace(base, **overrides)
