"""Table tests of the retry policy."""

from __future__ import annotations

import pytest

from pim_hub.services.dispatcher.policy import Disposition, classify

DELAYS = (30, 300, 1800)


@pytest.mark.parametrize(
    ("outcome", "retryable", "attempt", "retry_after", "expected"),
    [
        ("delivered", False, 1, None, Disposition("done")),
        ("skipped", False, 3, None, Disposition("done")),
        ("failed", False, 1, None, Disposition("dead")),
        ("failed", True, 1, None, Disposition("retry", 30.0, 0)),
        ("failed", True, 2, None, Disposition("retry", 300.0, 1)),
        ("failed", True, 3, None, Disposition("retry", 1800.0, 2)),
        ("failed", True, 4, None, Disposition("dead")),
        # Retry-After picks the first tier long enough ...
        ("failed", True, 1, 60.0, Disposition("retry", 300.0, 1)),
        ("failed", True, 1, 10.0, Disposition("retry", 30.0, 0)),
        # ... and waits longer than the last tier when asked to.
        ("failed", True, 1, 7200.0, Disposition("retry", 7200.0, 2)),
        ("failed", True, 3, 5.0, Disposition("retry", 1800.0, 2)),
    ],
)
def test_classify_table(
    outcome: str, retryable: bool, attempt: int, retry_after: float | None, expected: Disposition
) -> None:
    assert classify(outcome, retryable, attempt, 4, DELAYS, retry_after) == expected


def test_no_tiers_means_dead() -> None:
    assert classify("failed", True, 1, 4, (), None).action == "dead"
