"""Rate limit parsing and the token bucket."""

from __future__ import annotations

import pytest

from pim_hub.registry.limits import (
    InvalidRateLimit,
    RateLimit,
    TokenBucket,
    without_rate_limit,
)


def test_defaults_when_absent() -> None:
    assert RateLimit.from_config({"url": "x"}, 8) == RateLimit(None, 8, 1)


def test_reads_the_rate_limit_key() -> None:
    limit = RateLimit.from_config({"rate_limit": {"requests_per_s": 5, "concurrent": 2}}, 8)
    assert limit == RateLimit(5.0, 2, 5)


@pytest.mark.parametrize(
    "raw",
    [{"requests_per_s": 0}, {"concurrent": 0}, {"rps": 3}, {"requests_per_s": "fast"}, [1]],
)
def test_bad_values_are_refused(raw: object) -> None:
    with pytest.raises(InvalidRateLimit):
        RateLimit.from_config({"rate_limit": raw}, 8)


def test_driver_config_loses_the_key() -> None:
    assert without_rate_limit({"url": "x", "rate_limit": {}}) == {"url": "x"}


def test_bucket_allows_burst_then_paces() -> None:
    bucket = TokenBucket(rate=10.0, burst=2)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) == pytest.approx(0.1)


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(rate=None, burst=1)
    assert all(bucket.take(0.0, 100) == 0.0 for _ in range(10))
