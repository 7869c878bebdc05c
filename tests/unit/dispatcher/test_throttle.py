"""The adaptive concurrency (AIMD) of an integration, step by step."""

from __future__ import annotations

import pytest

from pim_hub.services.dispatcher.core.throttle import Aimd, ThrottlePolicy, is_throttled

POLICY = ThrottlePolicy(latency_s=2.0, decrease=0.5, backoff_s=0.5, backoff_max_s=2.0)


@pytest.mark.parametrize(
    ("outcome", "retryable", "status", "throttled"),
    [
        ("failed", True, 429, True),
        ("failed", True, 503, False),  # an outage: the circuit breaker's
        ("failed", False, 429, False),  # a driver that gave up on it: the job's own failure
        ("failed", True, None, False),
        ("delivered", False, None, False),
    ],
)
def test_what_counts_as_throttling(
    outcome: str, retryable: bool, status: int | None, throttled: bool
) -> None:
    assert is_throttled(outcome, retryable, status) is throttled


def test_starts_at_the_configured_concurrency() -> None:
    aimd = Aimd(POLICY, 8)
    assert aimd.current == 8 and aimd.wait(0.0) == 0.0


def test_a_429_halves_the_limit_once_per_round_trip() -> None:
    aimd = Aimd(POLICY, 8)
    assert aimd.throttled(10.0, started=9.9)
    assert aimd.current == 4
    # Answers to calls that were in flight together (started before that decrease): one
    # signal, not eight.
    for _ in range(7):
        assert not aimd.throttled(10.2, started=9.95)
    assert aimd.current == 4
    assert aimd.throttled(10.3, started=10.1)  # a call made under the new limit
    assert aimd.current == 2
    aimd.throttled(12.2)
    aimd.throttled(13.3)
    assert aimd.current == 1  # never below one call at a time


def test_additive_increase_back_to_the_ceiling() -> None:
    aimd = Aimd(POLICY, 8)
    aimd.throttled(0.0)
    aimd.throttled(1.0)
    assert aimd.current == 2
    # One more call at once after `current` answers in time.
    assert not aimd.answered(5.0, 0.1)
    assert aimd.answered(5.0, 0.1)
    assert aimd.current == 3
    # An answer to a call made before the last decrease does not raise it.
    aimd.throttled(6.0)
    assert aimd.current == 1
    assert not aimd.answered(6.5, 1.0)
    assert aimd.current == 1 and aimd.limit == 1.5
    for _ in range(100):
        aimd.answered(7.0, 0.1)
    assert aimd.current == 8  # not above the configured concurrency
    assert not aimd.answered(7.0, 0.1)


def test_slow_answers_lower_the_limit_like_a_429_but_do_not_hold() -> None:
    aimd = Aimd(POLICY, 8)
    assert aimd.answered(0.0, 2.5)
    assert aimd.current == 4
    assert aimd.wait(0.0) == 0.0
    assert not aimd.answered(0.5, 3.0)  # started before that decrease: the same burst
    assert aimd.answered(4.0, 3.0)
    assert aimd.current == 2


def test_latency_zero_is_no_signal() -> None:
    aimd = Aimd(ThrottlePolicy(latency_s=0), 4)
    assert not aimd.answered(0.0, 120.0)
    assert aimd.current == 4


def test_retry_after_holds_every_call() -> None:
    aimd = Aimd(POLICY, 4)
    aimd.throttled(100.0, retry_after=7.0)
    assert aimd.wait(100.0) == pytest.approx(7.0)
    assert aimd.wait(106.0) == pytest.approx(1.0)
    assert aimd.wait(107.0) == 0.0
    # A shorter Retry-After later does not shorten a hold already promised.
    aimd.throttled(101.0, retry_after=1.0)
    assert aimd.wait(101.0) == pytest.approx(6.0)


def test_429s_that_keep_coming_hold_longer_whatever_their_retry_after() -> None:
    aimd = Aimd(POLICY, 4)
    holds = []
    for t in (0.0, 10.0, 20.0, 30.0, 40.0):
        aimd.throttled(t, retry_after=0.1)
        holds.append(aimd.wait(t))
    assert holds == pytest.approx([0.5, 1.0, 2.0, 2.0, 2.0])  # up to backoff_max_s
    aimd.answered(50.0, 0.1)
    aimd.throttled(60.0, retry_after=0.1)
    assert aimd.wait(60.0) == pytest.approx(0.5)


def test_without_retry_after_the_hold_backs_off_until_an_answer() -> None:
    aimd = Aimd(POLICY, 4)
    aimd.throttled(0.0)
    assert aimd.wait(0.0) == pytest.approx(0.5)
    aimd.throttled(1.0)
    assert aimd.wait(1.0) == pytest.approx(1.0)
    aimd.throttled(3.0)
    assert aimd.wait(3.0) == pytest.approx(2.0)
    aimd.throttled(6.0)
    assert aimd.wait(6.0) == pytest.approx(2.0)  # backoff_max_s
    aimd.answered(9.0, 0.1)
    aimd.throttled(9.5)
    assert aimd.wait(9.5) == pytest.approx(0.5)  # the target answered in between: reset


def test_a_lower_configured_concurrency_caps_the_limit() -> None:
    aimd = Aimd(POLICY, 8)
    aimd.set_ceiling(3)
    assert aimd.current == 3
    aimd.set_ceiling(6)  # raised: the limit climbs back by itself
    assert aimd.current == 3
    for _ in range(50):
        aimd.answered(0.0, 0.1)
    assert aimd.current == 6
