"""The embedded broker exports its own request counts when HUB_EMBEDDED_BROKER_OTLP is set;
the benchmark's probe times the broker's acknowledgements."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from bench import broker_metrics
from pim_hub.devstack.embedded import start_tansu
from pim_hub.runtime.settings import Settings

pytestmark = pytest.mark.integration


def test_the_benchmark_reads_the_requests_the_broker_served() -> None:
    with broker_metrics.BrokerMetrics() as metrics, broker_metrics.exported_to(metrics):
        broker = start_tansu()
        try:
            before = metrics.snapshot(fresh_within_s=10)
            producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
            for i in range(3):
                producer.produce("metrics-check", b"x", key=str(i))
                producer.flush(10)  # one produce request each
            grown = broker_metrics.difference(before, metrics.snapshot(fresh_within_s=10))
        finally:
            broker.stop()
    produced = sum(v for k, v in grown.items() if k.startswith("requests.Produce"))
    assert produced >= 3
    assert grown.get("bytes_received", 0) > 0


def test_the_hubs_tracing_endpoint_is_not_the_brokers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tansu would read OTEL_EXPORTER_OTLP_ENDPOINT (set for the hub's tracing) by itself."""
    monkeypatch.delenv("HUB_EMBEDDED_BROKER_OTLP", raising=False)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    with broker_metrics.BrokerMetrics() as metrics:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", metrics.endpoint)
        broker = start_tansu()
        try:
            assert broker.process is not None
            assert "--otlp-endpoint-url" not in broker.process.args  # type: ignore[operator]
            # Exports every 0.3 s would have arrived by now, had the broker read the variable.
            assert metrics.snapshot(fresh_within_s=2) == {}
            assert metrics.exports == 0
        finally:
            broker.stop()


def test_the_ack_probe_times_each_acknowledgement_at_its_pace(hub_settings: Settings) -> None:
    from bench.bench_e2e import _ack_probe

    bootstrap = str(hub_settings.kafka_config()["bootstrap.servers"])
    started = time.time()
    acks = _ack_probe(bootstrap, seconds=1.5, every_s=0.1)
    # One record a tenth of a second, each acknowledged (a fresh producer's first waits
    # for its connection and producer id).
    assert 13 <= len(acks) <= 15
    sent_at = [at for at, _ in acks]
    assert sent_at == sorted(sent_at) and started <= sent_at[0]
    # Paced, not sent as fast as acknowledgements come back.
    assert sent_at[-1] - sent_at[0] >= 1.2
    assert all(0 < latency < 30 for _, latency in acks)
