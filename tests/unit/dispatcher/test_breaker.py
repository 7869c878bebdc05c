"""The circuit breaker of an integration, step by step."""

from __future__ import annotations

import pytest

from pim_hub.services.dispatcher.core.breaker import BreakerPolicy, CircuitBreaker, is_outage

POLICY = BreakerPolicy(threshold=3, probe_min_s=1.0, probe_max_s=4.0)


def state(br: CircuitBreaker) -> str:
    """The state now (a call, so that the type checker does not narrow it across steps)."""
    return br.state


@pytest.mark.parametrize(
    ("outcome", "retryable", "status", "kind", "outage"),
    [
        ("failed", True, None, "connection", True),
        ("failed", True, None, "timeout", True),
        ("failed", True, 503, "http_503", True),
        ("failed", True, 429, "http_429", False),  # throttling: core/throttle.py
        ("failed", True, None, "guard_unavailable", False),  # the database, not the target
        ("failed", True, None, "concurrent_update", False),  # this job's own trouble
        ("failed", False, 500, "http_500", False),  # permanent: the job, not the target
        ("failed", True, 409, "http_409", False),
        ("delivered", False, None, None, False),
    ],
)
def test_what_counts_as_an_outage(
    outcome: str, retryable: bool, status: int | None, kind: str | None, outage: bool
) -> None:
    assert is_outage(outcome, retryable, status, kind) is outage


def test_opens_after_consecutive_outages_only() -> None:
    br = CircuitBreaker(POLICY)
    assert not br.failed(0.0) and not br.failed(0.1)
    assert not br.succeeded()  # a success in between starts the count again
    assert not br.failed(0.2) and not br.failed(0.3)
    assert state(br) == "closed" and br.probe_wait(0.3) is None
    assert br.failed(0.4)
    assert state(br) == "open"


def test_probes_one_at_a_time_with_growing_backoff_then_closes() -> None:
    br = CircuitBreaker(POLICY)
    for t in (0.0, 0.0, 0.0):
        br.failed(t)
    assert br.probe_wait(0.5) == pytest.approx(0.5)  # not before probe_min_s
    assert br.probe_wait(1.0) == 0.0  # the probe goes: half-open
    assert state(br) == "half_open"
    assert br.probe_wait(1.1) == POLICY.probe_min_s  # no second probe while one is out
    br.failed(1.2)  # the probe failed: twice the wait
    assert state(br) == "open" and br.next_probe == pytest.approx(3.2)
    assert br.probe_wait(3.2) == 0.0
    br.failed(3.3)
    assert br.next_probe == pytest.approx(7.3)  # 4 s, the longest
    assert br.probe_wait(7.3) == 0.0
    br.failed(7.4)
    assert br.next_probe == pytest.approx(11.4)
    assert br.probe_wait(11.4) == 0.0
    assert br.succeeded()  # the target answered: closed at once
    assert state(br) == "closed" and br.probe_wait(11.5) is None
    assert br.backoff == POLICY.probe_min_s


def test_retry_after_pushes_the_probe_back() -> None:
    br = CircuitBreaker(POLICY)
    br.failed(0.0)
    br.failed(0.0)
    br.failed(0.0, retry_after=10.0)
    assert br.probe_wait(9.0) == pytest.approx(1.0)


def test_threshold_zero_never_opens() -> None:
    br = CircuitBreaker(BreakerPolicy(threshold=0))
    assert not any(br.failed(float(t)) for t in range(100))
    assert state(br) == "closed"


def test_an_outage_longer_than_the_ceiling_holds_the_jobs_no_longer() -> None:
    br = CircuitBreaker(BreakerPolicy(threshold=1, probe_min_s=1.0, probe_max_s=4.0, ceiling_s=60))
    assert br.failed(100.0)
    assert br.holding(100.0) and br.holding(159.9)
    assert br.probe_wait(159.9) is not None
    # Past the ceiling: no more waiting for probes, the jobs go out and their failures count.
    assert br.expired(160.0) and not br.holding(160.0)
    assert br.probe_wait(160.0) is None
    br.failed(161.0)
    assert state(br) == "open" and br.expired(161.0)  # still open in name (metrics, alert)
    assert br.succeeded()  # the target answers: closed, and the next outage starts afresh
    assert not br.expired(200.0)
    br.failed(200.0)
    assert br.holding(200.0)


def test_ceiling_zero_holds_for_ever() -> None:
    br = CircuitBreaker(BreakerPolicy(threshold=1, ceiling_s=0))
    br.failed(0.0)
    assert br.holding(10.0**9) and not br.expired(10.0**9)
