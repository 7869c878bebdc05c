"""Fault injection for the Magento sandbox: latency, 5xx, 429 and scripted failures."""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class FaultConfig:
    """Random faults; with a seed, the same request sequence gets the same faults.

    Attributes:
        error_rate: share of requests answered with `error_status` (0..1).
        error_status: the 5xx status of injected errors (500 is Magento's masked exception).
        rate_limit_rate: share of requests answered 429 with Retry-After (0..1).
        retry_after: seconds announced in Retry-After.
        latency: seconds added to every request.
        latency_jitter: up to this many extra seconds, drawn per request.
        bulk_failure_rate: share of async bulk operations that end retriably failed (status 2).
        include_auth: also fault the admin token endpoint.
        seed: seed of the random generator (None: not reproducible).
    """

    error_rate: float = 0.0
    error_status: int = 500
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    latency: float = 0.0
    latency_jitter: float = 0.0
    bulk_failure_rate: float = 0.0
    include_auth: bool = False
    seed: int | None = None


@dataclass(frozen=True)
class Fault:
    """What to do to one request: an error status (None: answer normally) and a delay."""

    status: int | None
    delay: float
    retry_after: float | None = None


@dataclass
class _Scripted:
    status: int
    remaining: int
    path_contains: str | None
    retry_after: float | None


class FaultInjector:
    """Draws faults per request; tests can also script the next failures exactly."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._rng = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._scripted: deque[_Scripted] = deque()
        self.injected = 0

    def fail_next(
        self,
        status: int = 503,
        *,
        times: int = 1,
        path_contains: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (before random faults)."""
        with self._lock:
            self._scripted.append(_Scripted(status, times, path_contains, retry_after))

    def draw(self, path: str, *, is_auth: bool) -> Fault:
        """Decide the fault of one request."""
        cfg = self.config
        with self._lock:
            delay = cfg.latency + (
                cfg.latency_jitter * self._rng.random() if cfg.latency_jitter else 0.0
            )
            for scripted in self._scripted:
                if scripted.path_contains is None or scripted.path_contains in path:
                    scripted.remaining -= 1
                    if scripted.remaining <= 0:
                        self._scripted.remove(scripted)
                    self.injected += 1
                    retry = scripted.retry_after
                    if scripted.status == 429 and retry is None:
                        retry = cfg.retry_after
                    return Fault(scripted.status, delay, retry)
            if is_auth and not cfg.include_auth:
                return Fault(None, delay)
            # Always draw, so the sequence of decisions depends only on the seed and request count.
            roll = self._rng.random()
            if roll < cfg.error_rate:
                self.injected += 1
                return Fault(cfg.error_status, delay)
            if roll < cfg.error_rate + cfg.rate_limit_rate:
                self.injected += 1
                return Fault(429, delay, cfg.retry_after)
            return Fault(None, delay)

    def bulk_operation_fails(self) -> bool:
        """Whether the next processed bulk operation ends retriably failed."""
        if self.config.bulk_failure_rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < self.config.bulk_failure_rate
