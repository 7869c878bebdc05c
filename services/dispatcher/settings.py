"""Dispatcher options: hub settings (HUB_DISPATCHER_*) plus knobs with sane defaults."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hub.settings import Settings


@dataclass(frozen=True)
class DispatcherOptions:
    """How one dispatcher process consumes, batches and delivers.

    Attributes:
        batch_size: most jobs handed to one `handle_batch` call (HUB_DISPATCHER_BATCH_SIZE).
        guard_batch_size: most jobs of a driver called job by job that share one guard
            transaction, reached while its calls are quick (a batch's calls take about
            `guard_batch_s`); never fewer than batch_size. Every job of a batch holds an
            advisory lock: up to 8 batches of it per dispatcher.
        guard_batch_s: how long the calls of one such batch should take at most.
        linger_ms: how long a batch waits to fill up (HUB_DISPATCHER_LINGER_MS).
        max_in_flight: concurrent driver calls per integration unless its config's
            `rate_limit.concurrent` says otherwise (HUB_DISPATCHER_MAX_IN_FLIGHT).
        max_attempts: attempts before a retryable failure is dead (HUB_DISPATCHER_MAX_ATTEMPTS).
        shutdown_timeout_s: SIGTERM drain budget (HUB_DISPATCHER_SHUTDOWN_TIMEOUT_S).
        retry_delays_s: retry tiers (HUB_RETRY_DELAYS_S).
        poll_records: most records taken per poll.
        max_buffered: records of one partition in the dispatcher before it is paused.
        commit_interval_s: how often acknowledged offsets are committed.
    """

    batch_size: int = 50
    guard_batch_size: int = 100
    guard_batch_s: float = 0.25
    linger_ms: int = 20
    max_in_flight: int = 8
    max_attempts: int = 4
    shutdown_timeout_s: float = 20.0
    retry_delays_s: tuple[int, ...] = (30, 300, 1800)
    poll_records: int = 500
    # Jobs of creations carry the entity's full state (tens of KB decoded): 200 per
    # partition bounds a dispatcher's memory under a backlog and still feeds 8 batches.
    max_buffered: int = 200
    commit_interval_s: float = 0.2

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DispatcherOptions:
        """Options from the hub settings, with overrides (tests, benchmarks)."""
        base = cls(
            batch_size=settings.dispatcher_batch_size,
            linger_ms=settings.dispatcher_linger_ms,
            max_in_flight=settings.dispatcher_max_in_flight,
            max_attempts=settings.dispatcher_max_attempts,
            shutdown_timeout_s=settings.dispatcher_shutdown_timeout_s,
            retry_delays_s=tuple(settings.retry_delays_s),
        )
        return replace(base, **overrides)
