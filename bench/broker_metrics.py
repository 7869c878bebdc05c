"""The embedded broker's own request counts, read from its OTLP metrics during a benchmark.

Tansu exports OpenTelemetry metrics over OTLP/HTTP when it is given an endpoint
(`HUB_EMBEDDED_BROKER_OTLP`, read by `pim_hub.devstack.embedded.start_tansu`): requests by
Kafka API, bytes in and out, and the operations on its storage (the memory engine is an
in-process object store). This module is that endpoint: a small HTTP server on a loopback
port that keeps the latest cumulative value of each counter, so a benchmark can take the
difference over a stage and put the broker's CPU beside what it was asked to do.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

#: Kafka API keys by name (the public protocol's numbering); the rest are reported by number.
API_NAMES = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    18: "ApiVersions",
    19: "CreateTopics",
    22: "InitProducerId",
    24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn",
    26: "EndTxn",
    28: "TxnOffsetCommit",
    32: "DescribeConfigs",
    60: "DescribeCluster",
    71: "GetTelemetrySubscriptions",
}

#: Cumulative counters kept, by the name the report gives them.
COUNTERS = {
    "tansu_api_requests": "requests",
    "tansu_objectstore_cache_requests": "storage",
    "tansu_bytes_received": "bytes_received",
    "tansu_bytes_sent": "bytes_sent",
}

#: How often the broker exports, in milliseconds (a stage is read after one more export).
EXPORT_INTERVAL_MS = 1000


def _label(metric: str, attributes: dict[str, Any]) -> str:
    kind = COUNTERS[metric]
    if kind == "requests":
        key = int(attributes.get("api_key", -1))
        # The version tells the clients apart: librdkafka and aiokafka (Faust) speak
        # different versions of Produce and Fetch.
        return f"requests.{API_NAMES.get(key, str(key))} v{attributes.get('api_version', '?')}"
    if kind == "storage":
        return f"storage.{attributes.get('method', '?')}"
    return kind


def parse(body: bytes) -> dict[str, float]:
    """Counter values of one OTLP export, summed by label (versions of an API together)."""
    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    out: dict[str, float] = {}
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name not in COUNTERS or metric.WhichOneof("data") != "sum":
                    continue
                for point in metric.sum.data_points:
                    attributes = {
                        a.key: a.value.string_value or a.value.int_value for a in point.attributes
                    }
                    value = point.as_int if point.HasField("as_int") else point.as_double
                    label = _label(metric.name, attributes)
                    out[label] = out.get(label, 0) + value
    return out


class BrokerMetrics:
    """An OTLP/HTTP metrics endpoint that keeps the broker's latest cumulative counters."""

    def __init__(self) -> None:
        self.latest: dict[str, float] = {}
        self.exports = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with contextlib.suppress(Exception):
                    owner._update(parse(body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _update(self, values: dict[str, float]) -> None:
        with self._changed:
            # Cumulative counters: the latest export holds every count so far.
            self.latest.update(values)
            self.exports += 1
            self._changed.notify_all()

    def snapshot(self, fresh_within_s: float = 5.0) -> dict[str, float]:
        """The counters after the next export (so what happened until now is in them)."""
        with self._changed:
            seen = self.exports
            self._changed.wait_for(lambda: self.exports > seen, timeout=fresh_within_s)
            return dict(self.latest)

    def __enter__(self) -> BrokerMetrics:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def difference(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What each counter grew by between two snapshots (counters that did not move left out)."""
    out = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in sorted(out.items()) if v}


def report(grown: dict[str, float], broker_cpu_s: float, products: int) -> dict[str, Any]:
    """Requests by API per product, and the broker's CPU per request and per produced record."""
    by_version = {k.split(".", 1)[1]: v for k, v in grown.items() if k.startswith("requests.")}
    requests: dict[str, float] = {}
    for label, count in by_version.items():
        api = label.split(" ")[0]
        requests[api] = requests.get(api, 0) + count
    total = sum(requests.values())
    per = max(products, 1)
    return {
        "requests": {k: int(v) for k, v in sorted(requests.items(), key=lambda kv: -kv[1])},
        "requests_per_product": round(total / per, 2),
        "by_api_per_product": {
            k: round(v / per, 3) for k, v in sorted(requests.items(), key=lambda kv: -kv[1])
        },
        "by_api_version": {
            k: int(v)
            for k, v in sorted(by_version.items(), key=lambda kv: -kv[1])
            if k.split(" ")[0] in ("Produce", "Fetch")
        },
        "cpu_us_per_request": round(1e6 * broker_cpu_s / total, 1) if total else None,
        "storage_ops_per_product": {
            k.split(".", 1)[1]: round(v / per, 2)
            for k, v in grown.items()
            if k.startswith("storage.")
        },
        "mb_received": round(grown.get("bytes_received", 0) / 1e6, 1),
        "mb_sent": round(grown.get("bytes_sent", 0) / 1e6, 1),
    }


@contextlib.contextmanager
def exported_to(metrics: BrokerMetrics | None) -> Iterator[None]:
    """Have an embedded broker started inside this block export to `metrics`."""
    if metrics is None:
        yield
        return
    saved = os.environ.get("HUB_EMBEDDED_BROKER_OTLP")
    os.environ["HUB_EMBEDDED_BROKER_OTLP"] = metrics.endpoint
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HUB_EMBEDDED_BROKER_OTLP", None)
        else:
            os.environ["HUB_EMBEDDED_BROKER_OTLP"] = saved
