"""Pure retry policy: what a failed attempt leads to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Disposition:
    """What to do with a job after an attempt."""

    action: Literal["done", "retry", "dead"]
    delay_s: float = 0.0
    tier: int = 0  # index into the retry delays


#: Delivered or skipped: one shared value, not an object per job.
DONE = Disposition("done")


def classify(
    outcome: str,
    retryable: bool,
    attempt: int,
    max_attempts: int,
    delays: Sequence[int],
    retry_after: float | None = None,
) -> Disposition:
    """Delivered or skipped is done; a retryable failure retries with growing delays until
    max_attempts, honouring a longer Retry-After; anything else is dead."""
    if outcome in ("delivered", "skipped"):
        return DONE
    if not retryable or attempt >= max_attempts or not delays:
        return Disposition("dead")
    tier = min(attempt - 1, len(delays) - 1)
    # Retry-After picks the first tier long enough, so the target's wish is honoured.
    if retry_after is not None:
        while tier < len(delays) - 1 and delays[tier] < retry_after:
            tier += 1
    delay = max(float(delays[tier]), retry_after or 0.0)
    return Disposition("retry", delay_s=delay, tier=tier)
