"""A circuit breaker per integration: when its target fails for everything, stop and probe.

Closed: jobs go out. After `threshold` consecutive outage failures (the target unreachable,
timing out, answering 5xx) it opens: the integration's jobs wait in the dispatcher
(no attempt counted, nothing sent to the retry tiers) while one probe at a time, with a
growing backoff that honours Retry-After, checks the target (half-open). The first answer that
is not an outage closes it, and the jobs go out at once. A failure of one job for a reason of
its own (a 4xx, a validation error) says the target is up: it resets the count. So does a
429: the target is up and asks for fewer requests, which core/throttle.py answers.

The outage ceiling: an outage longer than `ceiling_s` no longer holds the jobs. The breaker
stays open in name (its metrics and the alert say so), but `expired` lets the jobs go out
again, job by job, through the retry tiers to the dead-letter topic like any failure, so a
target gone for good does not hold the jobs (and the dispatcher's buffer) forever.

Pure: the caller gives the time; see docs/delivery-semantics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]

#: Metric values of the states (pimhub_dispatcher_circuit_state).
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}

#: Error kinds that say the target itself is failing, whatever the job.
OUTAGE_KINDS = frozenset({"connection", "timeout"})


def is_outage(outcome: str, retryable: bool, status: int | None, kind: str | None) -> bool:
    """Whether a delivery result says the target fails for everything (not for this job)."""
    if outcome != "failed" or not retryable:
        return False
    if status is not None:
        return status >= 500
    return kind in OUTAGE_KINDS


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how often it probes.

    Attributes:
        threshold: consecutive outage failures that open it (0: never opens).
        probe_min_s: wait before the first probe.
        probe_max_s: longest wait between probes (the wait doubles after each failed probe).
        ceiling_s: how long an outage holds the jobs at most (0: no limit).
    """

    threshold: int = 5
    probe_min_s: float = 1.0
    probe_max_s: float = 5.0
    ceiling_s: float = 86400.0


class CircuitBreaker:
    """The state of one integration's target, as its deliveries show it."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state: State = "closed"
        self.failures = 0
        self.backoff = policy.probe_min_s
        self.next_probe = 0.0
        self.opened_at: float | None = None
        self.last_probe: float | None = None  # when the last probe of this outage went

    def failed(self, now: float, retry_after: float | None = None) -> bool:
        """An outage failure; True when it opens the breaker (it was closed)."""
        self.failures += 1
        if self.state == "closed":
            if self.policy.threshold <= 0 or self.failures < self.policy.threshold:
                return False
            self.state, self.opened_at = "open", now
            self.backoff = self.policy.probe_min_s
            self.next_probe = now + max(self.backoff, retry_after or 0.0)
            return True
        if self.state == "half_open":  # the probe failed: wait longer before the next
            self.backoff = min(self.backoff * 2, self.policy.probe_max_s)
        self.state = "open"  # (a batch already under way when it opened changes nothing)
        self.next_probe = max(self.next_probe, now + max(self.backoff, retry_after or 0.0))
        return False

    def succeeded(self) -> bool:
        """An answer that is not an outage; True when it closes the breaker."""
        self.failures = 0
        if self.state == "closed":
            return False
        self.state, self.opened_at, self.last_probe = "closed", None, None
        self.backoff = self.policy.probe_min_s
        return True

    def expired(self, now: float) -> bool:
        """Whether it has been open longer than the outage ceiling: the jobs go out again."""
        return (
            self.opened_at is not None
            and self.policy.ceiling_s > 0
            and now - self.opened_at >= self.policy.ceiling_s
        )

    def holding(self, now: float) -> bool:
        """Whether the jobs wait for the target (open or probing, within the ceiling)."""
        return self.state != "closed" and not self.expired(now)

    def probe_wait(self, now: float) -> float | None:
        """None while closed (or past the ceiling); else seconds until a probe may go (0:
        now, and it goes)."""
        if self.state == "closed" or self.expired(now):
            return None
        if self.state == "half_open":
            return self.policy.probe_min_s  # a probe is under way: its answer decides
        wait = self.next_probe - now
        if wait <= 0:
            self.state, self.last_probe = "half_open", now
            return 0.0
        return wait
