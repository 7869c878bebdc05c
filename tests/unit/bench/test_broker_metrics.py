"""The benchmark's reading of the embedded broker's OTLP metrics."""

from __future__ import annotations

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Metric,
    NumberDataPoint,
)

from bench import broker_metrics


def _export(points: dict[str, list[tuple[dict[str, int | str], int]]]) -> bytes:
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    for name, values in points.items():
        metric: Metric = scope.metrics.add()
        metric.name = name
        metric.sum.aggregation_temporality = (
            AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        )
        for attributes, value in values:
            point: NumberDataPoint = metric.sum.data_points.add()
            point.as_int = value
            for key, raw in attributes.items():
                any_value = (
                    AnyValue(int_value=raw) if isinstance(raw, int) else AnyValue(string_value=raw)
                )
                point.attributes.append(KeyValue(key=key, value=any_value))
    # A histogram of the same export is not a counter: left out.
    other = scope.metrics.add()
    other.name = "tansu_request_duration"
    other.histogram.data_points.add().count = 7
    body: bytes = request.SerializeToString()
    return body


def test_counters_by_api_and_version() -> None:
    body = _export(
        {
            "tansu_api_requests": [
                ({"api_key": 0, "api_version": 10}, 40),
                ({"api_key": 0, "api_version": 7}, 10),
                ({"api_key": 1, "api_version": 16}, 25),
                ({"api_key": 999, "api_version": 0}, 1),
            ],
            "tansu_objectstore_cache_requests": [({"method": "get_opts"}, 500)],
            "tansu_bytes_sent": [({}, 2_000_000)],
        }
    )
    assert broker_metrics.parse(body) == {
        "requests.Produce v10": 40,
        "requests.Produce v7": 10,
        "requests.Fetch v16": 25,
        "requests.999 v0": 1,
        "storage.get_opts": 500,
        "bytes_sent": 2_000_000,
    }


def test_report_per_product_and_per_request() -> None:
    before: dict[str, float] = {
        "requests.Produce v10": 10,
        "requests.Fetch v16": 5,
        "storage.get_opts": 100,
    }
    after: dict[str, float] = {
        "requests.Produce v10": 110,
        "requests.Produce v7": 50,
        "requests.Fetch v16": 55,
        "storage.get_opts": 1100,
        "bytes_sent": 3_000_000,
    }
    grown = broker_metrics.difference(before, after)
    out = broker_metrics.report(grown, broker_cpu_s=0.4, products=100)
    assert out["requests"] == {"Produce": 150, "Fetch": 50}
    assert out["requests_per_product"] == 2.0
    assert out["by_api_version"] == {"Produce v10": 100, "Fetch v16": 50, "Produce v7": 50}
    assert out["cpu_us_per_request"] == 2000.0  # 0.4 s over 200 requests
    assert out["storage_ops_per_product"] == {"get_opts": 10.0}
    assert out["mb_sent"] == 3.0


def test_the_endpoint_keeps_the_latest_cumulative_values() -> None:
    with broker_metrics.BrokerMetrics() as metrics:
        for count in (5, 9):
            body = _export({"tansu_api_requests": [({"api_key": 1, "api_version": 16}, count)]})
            answer = httpx.post(metrics.endpoint + "/v1/metrics", content=body, timeout=5)
            assert answer.status_code == 200
        assert metrics.snapshot(fresh_within_s=0.01) == {"requests.Fetch v16": 9}
        # Something that is not OTLP is answered and ignored, not a crash of the endpoint.
        assert httpx.post(metrics.endpoint, content=b"\xff\x00", timeout=5).status_code == 200
        assert metrics.latest == {"requests.Fetch v16": 9}
