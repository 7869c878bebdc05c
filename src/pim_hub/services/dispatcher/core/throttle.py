"""Adaptive concurrency per integration (AIMD): a throttling target gets fewer calls at once.

A target that answers 429 (too many requests) or slows down is up, and it is asking for
less: pausing it like an outage or spending the jobs' attempts would be wrong. So each lane
keeps a concurrency limit between 1 and the integration's configured `concurrent`:

- **Multiplicative decrease**: a 429, or a call slower than `latency_s`, multiplies the
  limit by `decrease` (half), once per round trip: the answer to a call that started before
  the last decrease tells of the old limit, not the new one (a burst of answers to calls
  that were in flight together is one signal, not many; TCP's congestion window does the
  same once per round trip).
- **Additive increase**: every `limit` calls answered in time raise it by one, back up to
  the configured ceiling.
- **Retry-After**: a 429 holds every call of the integration until its Retry-After has
  passed, and at least for a backoff that doubles from `backoff_s` up to `backoff_max_s`
  while 429s keep coming (reset by any other answer). The jobs it answered are put back in
  their lane, no attempt spent.

Pure: the caller gives the time; see docs/delivery-semantics.md.
"""

from __future__ import annotations

from dataclasses import dataclass


def is_throttled(outcome: str, retryable: bool, status: int | None) -> bool:
    """Whether a delivery result says the target wants fewer requests (HTTP 429)."""
    return outcome == "failed" and retryable and status == 429


@dataclass(frozen=True)
class ThrottlePolicy:
    """How a lane's concurrency follows its target's answers.

    Attributes:
        latency_s: a call slower than this lowers the limit (0: latency is no signal).
        decrease: what a throttling signal multiplies the limit by (0 < decrease < 1).
        backoff_s: how long a 429 holds the calls at least (doubling while they keep
            coming, up to backoff_max_s; a longer Retry-After wins).
        backoff_max_s: the longest such hold (unless Retry-After asks for more).
    """

    latency_s: float = 10.0
    decrease: float = 0.5
    backoff_s: float = 0.5
    backoff_max_s: float = 5.0


class Aimd:
    """The concurrency limit of one integration's calls, as its target's answers move it."""

    def __init__(self, policy: ThrottlePolicy, ceiling: int) -> None:
        self.policy = policy
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        self.resume_at = float("-inf")  # no call before this (a 429's Retry-After)
        self.last_decrease = float("-inf")
        self.backoff = policy.backoff_s

    @property
    def current(self) -> int:
        """Calls allowed at once now (never fewer than one)."""
        return max(1, int(self.limit))

    def set_ceiling(self, ceiling: int) -> None:
        """The integration's configured `concurrent` changed: the limit stays within it."""
        ceiling = max(1, ceiling)
        if ceiling != self.ceiling:
            self.ceiling = ceiling
            self.limit = min(self.limit, float(ceiling))

    def wait(self, now: float) -> float:
        """Seconds until calls may go again (0: now)."""
        return max(0.0, self.resume_at - now)

    def throttled(
        self, now: float, retry_after: float | None = None, started: float | None = None
    ) -> bool:
        """A 429 to a call that started at `started` (default: now): hold the calls, lower
        the limit; True when the limit changed."""
        # A longer Retry-After is honoured; 429s that keep coming (nothing answered in
        # between) hold longer each time, up to backoff_max_s, whatever they say: a target
        # that refuses even one call at a time gets a call every few seconds, as an outage's
        # probe does.
        hold = max(retry_after or 0.0, self.backoff)
        self.backoff = min(self.backoff * 2, self.policy.backoff_max_s)
        self.resume_at = max(self.resume_at, now + hold)
        return self._decrease(now, now if started is None else started)

    def answered(self, now: float, latency_s: float) -> bool:
        """An answer that is not a 429, latency_s after its call started; True when the
        limit changed."""
        self.backoff = self.policy.backoff_s
        started = now - latency_s
        if 0 < self.policy.latency_s < latency_s:
            return self._decrease(now, started)
        if self.limit >= self.ceiling or started < self.last_decrease:
            return False  # the ceiling; or an answer to a call made under the old limit
        before = self.current
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.current)
        return self.current != before

    def _decrease(self, now: float, started: float) -> bool:
        if started < self.last_decrease:
            return False  # a call made under the old limit: that burst is counted already
        self.last_decrease = now
        before = self.current
        self.limit = max(1.0, self.limit * self.policy.decrease)
        return self.current != before
