"""A real service exports its spans over OTLP/HTTP when an endpoint is configured."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pim_hub.devstack.embedded import free_port
from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.sandbox.akeneo.webhooks import sign_legacy

pytestmark = pytest.mark.integration

SECRET = "otlp-secret"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP receiver: keeps every span it is sent, with its resource attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for rs in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            collector.spans.append((resource, span))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


def test_the_receiver_exports_its_span_continuing_the_callers_trace(
    supervisor: Supervisor, collector: Collector, unique: str
) -> None:
    port = free_port()
    supervisor.env.update(
        {
            "HUB_INGEST_EVENTS_API_SECRET": SECRET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within 0.2 s (default 5 s)
        }
    )
    supervisor.start("ingest-web-otlp", "ingest", "web", "--port", str(port))
    event_id = f"otlp-{unique}"
    event = {
        "action": "product.updated",
        "event_id": event_id,
        "event_datetime": "2026-01-01T10:00:00+00:00",
        "author": "otlp",
        "author_type": "ui",
        "pim_source": "http://pim_hub.sandbox.akeneo.local",
        "data": {"resource": {"uuid": f"00000000-0000-4000-8000-{unique:0>12}", "identifier": "X"}},
    }
    body = orjson.dumps({"events": [event]})

    def post() -> int:
        stamp = str(int(time.time()))
        try:
            return httpx.post(
                f"http://127.0.0.1:{port}/webhooks/akeneo/events-api",
                content=body,
                headers={
                    "content-type": "application/json",
                    "x-akeneo-request-timestamp": stamp,
                    "x-akeneo-request-signature": sign_legacy(SECRET, stamp, body),
                    # The caller's own trace: the receiver's span continues it.
                    "traceparent": f"00-{TRACE}-{PARENT}-01",
                },
                timeout=10,
            ).status_code
        except httpx.TransportError:
            return 0

    wait_for(
        lambda: post() == 200, timeout=120, interval=1, what="the receiver", supervisor=supervisor
    )

    def exported() -> list[tuple[dict[str, Any], Any]]:
        return [
            (resource, span)
            for resource, span in collector.spans
            if span.name == "ingest.webhook"
            and any(
                a.key == "event_id" and a.value.string_value == event_id for a in span.attributes
            )
        ]

    found = wait_for(
        exported, timeout=60, interval=0.5, what="the exported span", supervisor=supervisor
    )
    resource, span = found[0]
    assert resource["service.name"] == "pim-hub-ingest-web"
    assert span.trace_id.hex() == TRACE
    assert span.parent_span_id.hex() == PARENT
    attributes = {a.key: a.value.string_value for a in span.attributes}
    assert attributes["entity_key"].startswith("product:")
