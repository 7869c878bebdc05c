"""What the benchmark reads from the services' /metrics: held jobs by lane and reason, and a
histogram's summary (event-loop lag, the receiver's answer times)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from bench.bench_e2e import _event_loop_lag, _held, _scrape
from pim_hub.sandbox.akeneo.server import free_port


@pytest.fixture
def dispatchers() -> Iterator[tuple[Any, CollectorRegistry]]:
    """A service's /metrics serving a registry of the test's, and one that stopped."""
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    # A port that answers nothing: a service that stopped is left out, not an error.
    hub = SimpleNamespace(metrics_ports={"immediate": port, "gone": free_port()})
    try:
        yield hub, registry
    finally:
        server.shutdown()
        thread.join(5)


def test_held_jobs_are_counted_by_lane_and_reason(
    dispatchers: tuple[Any, CollectorRegistry],
) -> None:
    hub, registry = dispatchers
    labels = ["driver", "integration", "priority", "reason"]
    held = Counter("pimhub_dispatcher_held", "held", labels, registry=registry)
    given_up = Counter(
        "pimhub_dispatcher_order_given_up", "given up", labels[:3], registry=registry
    )
    held.labels("magento2", "a", "immediate", "order").inc(7)
    held.labels("magento2", "b", "immediate", "order").inc(3)
    held.labels("magento2", "a", "normal", "throttle").inc(2)
    given_up.labels("magento2", "a", "immediate").inc(1)
    assert _held(_scrape(hub)) == {
        "immediate order": 10,
        "immediate order given up": 1,
        "normal throttle": 2,
    }


def test_event_loop_lag_is_summarised_per_service(
    dispatchers: tuple[Any, CollectorRegistry],
) -> None:
    hub, registry = dispatchers
    lag = Histogram(
        "pimhub_event_loop_lag_seconds",
        "lag",
        ["loop"],
        registry=registry,
        buckets=(0.001, 0.01, 0.1, 1.0),
    )
    for seconds in [0.0005] * 98 + [0.05, 0.5]:
        lag.labels("event-loop").observe(seconds)
    assert _event_loop_lag(_scrape(hub)) == {
        "immediate": {
            "count": 100,
            "mean_ms": round(1000 * (98 * 0.0005 + 0.55) / 100, 1),
            "p50_at_most_s": 0.001,
            "p99_at_most_s": 0.1,
        }
    }
