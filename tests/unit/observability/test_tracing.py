"""Tracing helpers: the W3C context in record headers, spans per stage, the HTTP request."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pim_hub.devstack.sink import HttpSink
from pim_hub.runtime import tracing
from pim_hub.runtime.http import async_client, trace_configs

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def finished(exporter: InMemorySpanExporter) -> list[Any]:
    """The recorded spans (typed loosely: the SDK's optional fields are set here)."""
    return list(exporter.get_finished_spans())


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)


def test_without_tracing_the_headers_pass_through_and_nothing_is_recorded() -> None:
    assert not tracing.enabled()
    headers = [("x-other", b"1"), ("traceparent", PARENT.encode()), ("tracestate", b"a=b")]
    with tracing.stage("mutator.mutate", headers, {"entity_key": "product:1"}) as out:
        assert out == [("traceparent", PARENT.encode()), ("tracestate", b"a=b")]
    with tracing.stage("mutator.mutate", [("x-other", b"1")]) as out:
        assert out == []
    assert tracing.outgoing("POST", "http://x") is None


def test_trace_ids_are_read_from_headers_of_any_shape() -> None:
    assert tracing.trace_id([("traceparent", PARENT.encode())]) == PARENT.split("-")[1]
    assert tracing.trace_id({"traceparent": PARENT}) == PARENT.split("-")[1]
    assert tracing.trace_id([("traceparent", b"garbage")]) is None
    assert (
        tracing.trace_id([("traceparent", b"00-" + b"0" * 32 + b"-" + b"1" * 16 + b"-01")]) is None
    )
    assert tracing.trace_id(None) is None


def test_each_stage_is_a_child_of_the_record_it_read(spans: InMemorySpanExporter) -> None:
    with tracing.stage("ingest.webhook", None, {"event_id": "e1"}) as raw:
        pass
    with tracing.stage("ingest.enrich", raw, {"entity_key": "product:1"}) as snap:
        pass
    with tracing.stage("mutator.mutate", snap, {"entity_key": "product:1", "x": None}) as mut:
        pass
    with tracing.stage("mutator.fanout", mut, {"job_id": "j1"}) as job:
        pass
    # A retry job keeps the job's headers: its second delivery joins the same trace.
    with tracing.stage("dispatcher.deliver", job, {"attempt": 1}):
        pass
    with tracing.stage("dispatcher.deliver", job, {"attempt": 2}):
        pass
    done = {s.name + str(s.attributes.get("attempt", "")): s for s in finished(spans)}
    assert len(done) == 6
    assert len({s.context.trace_id for s in done.values()}) == 1
    chain = ["ingest.webhook", "ingest.enrich", "mutator.mutate", "mutator.fanout"]
    for parent, child in itertools.pairwise(chain):
        assert done[child].parent.span_id == done[parent].context.span_id, child
    for attempt in ("1", "2"):
        deliver = done["dispatcher.deliver" + attempt]
        assert deliver.parent.span_id == done["mutator.fanout"].context.span_id
    assert done["ingest.webhook"].parent is None
    assert done["ingest.webhook"].attributes["event_id"] == "e1"
    assert "x" not in done["mutator.mutate"].attributes
    assert tracing.trace_id(job) == format(done["ingest.webhook"].context.trace_id, "032x")


def test_an_outside_producers_traceparent_is_the_parent(spans: InMemorySpanExporter) -> None:
    with tracing.stage("mutator.mutate", [("traceparent", PARENT.encode())]):
        pass
    (span,) = finished(spans)
    assert format(span.context.trace_id, "032x") == PARENT.split("-")[1]
    assert format(span.parent.span_id, "016x") == PARENT.split("-")[2]


def test_a_failing_stage_records_the_error(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), tracing.stage("dispatcher.deliver", None):
        raise ValueError("boom")
    (span,) = finished(spans)
    assert not span.status.is_ok and span.events[0].name == "exception"


def test_a_batch_span_links_every_record(spans: InMemorySpanExporter) -> None:
    heads = []
    for i in range(3):
        with tracing.stage("mutator.fanout", None, {"job_id": str(i)}) as h:
            heads.append(h)
    with tracing.batch_stage("dispatcher.deliver_batch", heads, {"integration": "m2"}):
        pass
    batch = next(s for s in finished(spans) if s.name == "dispatcher.deliver_batch")
    assert len(batch.links) == 3
    first = next(s for s in finished(spans) if s.attributes.get("job_id") == "0")
    assert batch.context.trace_id == first.context.trace_id


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_the_request_inside_a_stage_carries_the_trace(
    spans: InMemorySpanExporter, client: str
) -> None:
    sink = HttpSink().start()
    try:

        async def call() -> None:
            with tracing.stage("dispatcher.deliver", [("traceparent", PARENT.encode())]):
                if client == "aiohttp":
                    async with aiohttp.ClientSession(trace_configs=trace_configs()) as s:
                        async with s.post(f"{sink.url}/t", json={"a": 1}) as resp:
                            assert resp.status == 200
                else:
                    async with async_client(timeout=5, max_connections=2) as c:
                        assert (await c.post(f"{sink.url}/t", json={"a": 1})).status_code == 200
            # Outside a record's work a request carries nothing.
            async with async_client(timeout=5, max_connections=2) as c:
                await c.post(f"{sink.url}/u", json={})

        asyncio.run(call())
        traced, plain = sink.requests[-2:]
    finally:
        sink.stop()
    request = next(s for s in finished(spans) if s.name == "HTTP POST")
    deliver = next(s for s in finished(spans) if s.name == "dispatcher.deliver")
    assert request.parent.span_id == deliver.context.span_id
    assert request.attributes["http.response.status_code"] == 200
    sent = {k.lower(): v for k, v in traced.headers.items()}["traceparent"]
    assert sent.split("-")[1] == PARENT.split("-")[1]
    assert sent.split("-")[2] == format(request.context.span_id, "016x")
    assert "traceparent" not in {k.lower() for k in plain.headers}


def test_otlp_export_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert tracing.configure("unit") is False and not tracing.enabled()
    off = tracing.TracingSettings.model_validate(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}
    )
    assert tracing.configure("unit", off) is False and not tracing.enabled()
    on = tracing.TracingSettings.model_validate(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    )
    try:
        assert tracing.configure("unit", on) is True and tracing.enabled()
    finally:
        tracing.use(None)


def test_the_client_span_fails_on_a_refused_connection(spans: InMemorySpanExporter) -> None:
    async def call() -> None:
        with tracing.stage("dispatcher.deliver", None):
            async with async_client(timeout=2, max_connections=1) as c:
                with pytest.raises(httpx.TransportError):
                    await c.post("http://127.0.0.1:1/x")

    asyncio.run(call())
    request = next(s for s in finished(spans) if s.name == "HTTP POST")
    assert not request.status.is_ok


def test_hub_trace_prints_the_trace_id_of_each_record() -> None:
    from datetime import UTC, datetime

    from pim_hub.ops.trace import Trace, TraceEvent, render

    tid = PARENT.split("-")[1]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    trace = Trace(
        "product:1",
        ["product:1"],
        events=[
            TraceEvent(at, "snapshot", "pim.snapshots", 0, 1, "full snapshot", {"trace_id": tid}),
            TraceEvent(at, "mutation", "hub.mutations", 0, 2, "create", {"trace_id": tid}),
            TraceEvent(at, "job", "hub.jobs.low", 0, 3, "job without a trace"),
        ],
    )
    lines = render(trace, changes=False)
    assert f"  trace id(s): {tid}" in lines
    assert sum(f"[trace {tid[:8]}]" in line for line in lines) == 2
    assert trace.as_json()["timeline"][0]["trace_id"] == tid  # `hub trace --json`


class _Producer:
    """An AsyncProducer stand-in that keeps what it is given and acknowledges it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any]] = []

    def send_nowait(self, topic: str, value: bytes, key: Any, headers: Any = None) -> Any:
        self.sent.append((topic, key, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_the_sync_starts_a_trace_per_entity_it_publishes(spans: InMemorySpanExporter) -> None:
    from pim_hub.sandbox.akeneo.catalogue import Catalogue
    from pim_hub.schemas.serde import Serde
    from pim_hub.services.ingest.sync import SyncRunner

    catalogue = Catalogue(2, seed=7)
    items = [p for n in range(2) if (p := catalogue.get_product(catalogue.product_uuid(n)))]
    producer = _Producer()
    runner = SyncRunner(None, producer, Serde(), None)  # type: ignore[arg-type]

    async def publish() -> None:
        gathered, published, invalid = runner._publish("product", items)
        await gathered
        assert (published, invalid) == (2, 0)

    asyncio.run(publish())
    recorded = {s.attributes["entity_key"]: s for s in finished(spans)}
    assert len(recorded) == 2
    for _topic, key, headers in producer.sent:
        span = recorded[key]
        assert span.name == "ingest.sync" and span.parent is None
        assert tracing.trace_id(headers) == format(span.context.trace_id, "032x")
    assert len({s.context.trace_id for s in recorded.values()}) == 2  # one trace per entity
