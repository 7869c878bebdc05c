from __future__ import annotations

import re
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from pim_hub.ops import exporter
from pim_hub.runtime import metrics

UNBOUNDED = {"sku", "identifier", "entity_key", "product", "code", "uuid", "job_id", "event_id"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_hub_metric_follows_the_naming_rules() -> None:
    found = list(metrics.metric_names())
    assert len(found) >= 20
    for name, kind, labels in found:
        assert re.fullmatch(r"pimhub_[a-z0-9_]+", name), name
        assert not name.endswith("_total"), f"{name}: the client adds _total to counters"
        if kind == "histogram":
            assert name.endswith("_seconds"), f"{name}: histograms are durations in seconds"
        assert not UNBOUNDED & set(labels), f"{name} has an unbounded label: {labels}"


def test_target_calls_implement_the_driver_metrics_protocol() -> None:
    calls = metrics.TargetCalls("webhook", "obs-unit")
    before = sample(
        "pimhub_target_calls_total", driver="webhook", integration="obs-unit", status="200"
    )
    calls.target_call(200)
    calls.target_call(200)
    calls.target_call("timeout")
    labels = {"driver": "webhook", "integration": "obs-unit"}
    assert sample("pimhub_target_calls_total", **labels, status="200") == before + 2
    assert sample("pimhub_target_calls_total", **labels, status="timeout") == 1


def test_a_delivered_job_records_end_to_end_latency_by_priority() -> None:
    received = datetime.now(UTC) - timedelta(seconds=3)
    series = metrics.JobSeries("webhook", "obs-e2e", "immediate", "delivered", None)
    series.observe(received, datetime.now(UTC))
    labels = {"priority": "immediate", "integration": "obs-e2e"}
    # A batch's latencies reach the histogram when the batch is counted.
    assert sample("pimhub_end_to_end_seconds_count", **labels) == 0
    series.count(1, 0.02)
    assert sample("pimhub_end_to_end_seconds_count", **labels) == 1
    assert 3 <= sample("pimhub_end_to_end_seconds_sum", **labels) < 10
    # Under 2.5 s is empty, the 5 s bucket holds it.
    assert sample("pimhub_end_to_end_seconds_bucket", **labels, le="2.5") == 0
    assert sample("pimhub_end_to_end_seconds_bucket", **labels, le="5.0") == 1


def test_observing_a_batch_at_once_fills_the_buckets_as_one_by_one() -> None:
    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 2.5, 2.6, 59.0, 1e6, 0.7, 0.7]
    one, batch = (
        Histogram(f"obs_{name}_seconds", "t", buckets=metrics.LATENCY_BUCKETS, registry=reg)
        for name, reg in (("one", CollectorRegistry()), ("batch", CollectorRegistry()))
    )
    for v in values:
        one.observe(v)
    metrics.observe_all(batch, values)

    def samples(h: Histogram) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name.split("_", 2)[2], s.labels, s.value)
            for m in h.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        ]

    assert samples(batch) == samples(one)
    assert ("seconds_count", {}, len(values)) in samples(batch)


@pytest.mark.parametrize(
    ("status", "metric", "extra"),
    [
        ("retrying", "pimhub_dispatcher_retries_total", {}),
        ("dead", "pimhub_dispatcher_dead_letters_total", {"error_kind": "permanent"}),
    ],
)
def test_failed_jobs_count_retries_and_dead_letters(
    status: str, metric: str, extra: dict[str, str]
) -> None:
    labels = {"driver": "webhook", "integration": f"obs-{status}", "priority": "low"}
    series = metrics.JobSeries("webhook", f"obs-{status}", "low", status, "permanent")
    series.count(1, 0.1)
    series.observe(None, datetime.now(UTC))
    assert sample(metric, **labels, **extra) == 1
    assert sample("pimhub_dispatcher_jobs_total", **labels, outcome=status) == 1
    assert (
        sample("pimhub_end_to_end_seconds_count", priority="low", integration=f"obs-{status}") == 0
    )


def test_mutations_are_counted_by_type_and_operation_with_their_latency() -> None:
    now = datetime.now(UTC)
    record = {
        "entity_type": "obs_type",
        "operation": "update",
        "source_received_at": now - timedelta(seconds=1),
    }
    metrics.observe_mutations([record, None, {**record, "operation": "create"}], now=now)
    assert sample("pimhub_mutator_mutations_total", entity_type="obs_type", operation="update") == 1
    assert sample("pimhub_mutator_mutations_total", entity_type="obs_type", operation="create") == 1
    assert sample("pimhub_mutator_latency_seconds_sum", entity_type="obs_type") == pytest.approx(
        2.0
    )


def test_serve_metrics_exposes_the_default_and_app_registries() -> None:
    own = CollectorRegistry()
    Counter("pimhub_obs_app_only", "an app's own counter", registry=own).inc(7)
    metrics.expose(own)
    port = metrics.start_from_env(
        "obs-test", metrics.MetricsSettings(metrics_port=0, metrics_host="127.0.0.1")
    )
    assert port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "pimhub_obs_app_only_total 7.0" in text
    assert 'pimhub_service_info{service="obs-test"} 1.0' in text


def test_metrics_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_METRICS_PORT", "9177")
    assert metrics.MetricsSettings().metrics_port == 9177
    monkeypatch.delenv("HUB_METRICS_PORT")
    assert metrics.MetricsSettings().metrics_port is None
    assert metrics.start_from_env("obs-no-port") is None


def test_lag_counts_records_after_the_commit_and_the_age_of_the_first_unread() -> None:
    behind = exporter.PartitionLag("hub-mutator", "pim.snapshots", 0, 10, 25, 1_000)
    assert behind.messages == 15
    assert behind.seconds(31_000) == 30.0
    caught_up = exporter.PartitionLag("hub-mutator", "pim.snapshots", 1, 25, 25, 1_000)
    assert caught_up.messages == 0 and caught_up.seconds(31_000) == 0.0
    # A broker that under-reports its end never yields a negative lag.
    assert exporter.PartitionLag("g", "t", 0, 30, 25, None).messages == 0


def test_dispatch_groups_get_their_priority_and_driver_as_labels() -> None:
    assert exporter.group_labels("hub.dispatch.magento2.immediate") == {
        "priority": "immediate",
        "driver": "magento2",
    }
    assert exporter.group_labels("hub-mutator") == {"priority": "", "driver": ""}
    assert exporter.group_labels("hub.dispatch.webhook.urgent") == {"priority": "", "driver": ""}


def test_watched_groups_are_listed_or_known_and_match_the_pattern() -> None:
    listed = ["hub.dispatch.webhook.low", "someone-else", "pim_hub.ops.exporter"]
    known = exporter.known_groups(["magento2"])
    groups = exporter.wanted_groups(listed, known, exporter.DEFAULT_GROUP_PATTERN)
    assert "hub.dispatch.webhook.low" in groups
    assert "hub.dispatch.magento2.immediate" in groups
    assert {"hub-mutator", "hub.projector.deliveries", "hub.ingest.enricher"} <= set(groups)
    assert "someone-else" not in groups and "pim_hub.ops.exporter" not in groups


def test_lag_families_expose_messages_seconds_offsets_and_ends() -> None:
    lags = [
        exporter.PartitionLag("hub.dispatch.webhook.normal", "hub.jobs.normal", 2, 5, 9, 0),
        exporter.PartitionLag("hub.projector.deliveries", "hub.jobs.normal", 2, 7, 9, 0),
    ]
    fams = {f.name: f for f in exporter.lag_families(lags, 4_000)}
    seconds = fams["pimhub_consumer_lag_seconds"].samples
    assert [s.value for s in seconds] == [4.0, 4.0]
    assert seconds[0].labels["priority"] == "normal" and seconds[0].labels["partition"] == "2"
    assert [s.value for s in fams["pimhub_consumer_lag_messages"].samples] == [4, 2]
    assert [s.value for s in fams["pimhub_topic_end_offset"].samples] == [9]
