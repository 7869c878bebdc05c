"""The fault drill of `make bench` (bench/bench_fault_drill.py), short: a target refusing
connections, then answering 503, then 429, then back. Nothing lost, nothing dead, the backlog
delivered within seconds of the target's return, and fewer calls during the outage than jobs
(the breaker probes; it does not send every job into a dead target)."""

from __future__ import annotations

import pytest

from bench.bench_fault_drill import drill
from pim_hub.runtime.settings import Settings
from pim_hub.services.dispatcher.core.breaker import BreakerPolicy

pytestmark = pytest.mark.integration

JOBS = 60
PHASE_S = 5.0


def test_a_short_outage_drains_fast_with_nothing_lost_or_dead(
    hub_settings: Settings, database_url: str
) -> None:
    result = drill(hub_settings, database_url, PHASE_S, JOBS, BreakerPolicy())
    print(result)  # in the log of a failing run: the figures beside the bench's
    assert result["delivered"] == JOBS, result
    assert result["dead"] == 0, result
    # Within 10 s of the target's return (the bound for the full drill).
    assert result["drain_s"] < 10.0, result
    # Three 5 s phases: without the breaker every job would be tried (and retried) against
    # the dead target; with it, a few calls find the outage and then one probe at a time.
    assert result["outage_attempts"] < JOBS, result
