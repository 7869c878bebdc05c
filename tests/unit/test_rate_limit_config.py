"""An integration's `rate_limit` is the dispatcher's: validated on write, hidden from the driver."""

from __future__ import annotations

import pytest

from pim_hub.drivers.webhook.driver import WebhookDriver
from pim_hub.registry.validation import config_problems


def test_a_valid_rate_limit_is_accepted_beside_the_driver_config() -> None:
    assert (
        config_problems(
            WebhookDriver,
            {"url": "http://x.test/", "rate_limit": {"requests_per_s": 5, "concurrent": 2}},
        )
        == []
    )


@pytest.mark.parametrize(
    ("rate_limit", "expected"),
    [
        ({"bogus": 1}, "unknown keys bogus"),
        ({"requests_per_s": -1}, "rate_limit"),
        ("fast", "must be an object"),
    ],
)
def test_a_bad_rate_limit_is_refused_with_the_reason(rate_limit: object, expected: str) -> None:
    problems = config_problems(WebhookDriver, {"url": "http://x.test/", "rate_limit": rate_limit})
    assert any(expected in p for p in problems), problems


def test_driver_problems_are_still_reported() -> None:
    problems = config_problems(WebhookDriver, {"rate_limit": {"requests_per_s": 5}})
    assert any(p.startswith("url") for p in problems), problems
