"""One webhook, one connected trace: receiver → raw event → enricher → snapshot → mutation →
job → dispatcher → the target's HTTP request, recorded with the SDK's in-memory exporter.

The receiver, the enricher and the dispatcher run in this process (their spans land in the
in-memory exporter); the session pipeline's mutator and fan-out run as processes that export
nothing, so they carry the context on unchanged, which `hub trace` shows on every record."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from starlette.testclient import TestClient

from pim_hub.console.app import create_app as console_app
from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.drivers.webhook.driver import WebhookDriver
from pim_hub.ops.trace import collect
from pim_hub.runtime import tracing
from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.akeneo.app import create_app as akeneo_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.sandbox.akeneo.server import serve_in_thread
from pim_hub.sandbox.akeneo.webhooks import legacy_webhook
from pim_hub.schemas import topics
from pim_hub.services.dispatcher.app import Dispatcher, run_in_thread
from pim_hub.services.dispatcher.settings import DispatcherOptions
from pim_hub.services.ingest.akeneo import AkeneoClient
from pim_hub.services.ingest.enricher import Enricher
from pim_hub.services.ingest.settings import IngestSettings
from pim_hub.services.ingest.web import EVENTS_API_PATH, RawRecord, create_app
from tests.integration.test_console import VIEWER_PASSWORD, console_settings, sign_in
from tests.integration.test_dispatcher_helpers import add_integration, catalogue_with
from tests.integration.test_ingest_support import new_topic

pytestmark = pytest.mark.integration

CREDS: dict[str, Any] = {"client_id": "cid", "secret": "sec", "username": "api", "password": "pw"}
SECRET = "trace-secret"


class Capture:
    """The receiver's publisher, keeping the records it would write (headers included)."""

    def __init__(self) -> None:
        self.records: list[RawRecord] = []

    async def publish(self, records: Sequence[RawRecord]) -> None:
        self.records.extend(records)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def test_one_webhook_makes_one_trace_down_to_the_target_request(
    spans: InMemorySpanExporter,
    pipeline: Supervisor,
    hub_settings: Settings,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    # A driver key of this test only: no other dispatcher takes its jobs.
    driver: Any = type(f"WebhookTrace{unique}", (WebhookDriver,), {"key": f"whtr{unique}"})
    integration = f"trace-{unique}"
    add_integration(
        database_url,
        catalogue_with(driver),
        integration,
        driver.key,
        {"url": f"{http_sink.url}/{unique}"},
    )
    catalogue = Catalogue(3, seed=random.randrange(10**9))  # products the hub never saw
    product = catalogue.product_uuid(0)
    change = catalogue.update_product(product, enabled=False)

    # 1. The webhook, received and signed like Akeneo's.
    capture = Capture()
    hook = legacy_webhook([change], secret=SECRET, event_ids=[f"trace-{unique}"])
    ingest = IngestSettings(events_api_secret=SecretStr(SECRET), own_connection="hub_conn")
    with TestClient(create_app(ingest, capture)) as client:
        answer = client.post(EVENTS_API_PATH, content=hook.body, headers=hook.headers)
    assert answer.status_code == 200, answer.text
    (raw,) = capture.records
    trace_id = tracing.trace_id(raw.headers)
    assert trace_id is not None

    # 2. The raw event on a topic of this test; the enricher publishes to pim.snapshots.
    raw_topic = new_topic(hub_settings, "traceraw", partitions=1)
    producer = make_producer(hub_settings)
    producer.produce(raw_topic, raw.value, raw.key, headers=raw.headers)
    assert producer.flush(30) == 0

    options = DispatcherOptions.from_settings(hub_settings, linger_ms=5)
    dispatchers = [
        Dispatcher(hub_settings, driver.key, p, catalogue_with(driver), options)
        for p in topics.PRIORITIES
    ]
    stops = [run_in_thread(d) for d in dispatchers]
    delivered = threading.Event()

    def received() -> list[Any]:
        return [r for r in http_sink.requests if r.path == f"/{unique}"]

    try:
        with serve_in_thread(akeneo_app(catalogue, **CREDS)) as url:

            async def enrich() -> None:
                async with AkeneoClient(url, **CREDS, backoff_base_s=0.01) as akeneo:
                    enricher = Enricher(
                        hub_settings,
                        ingest,
                        akeneo,
                        group_id=f"test.trace.{unique}",
                        topic=raw_topic,
                        output_topic=topics.SNAPSHOTS,
                    )
                    task = asyncio.create_task(enricher.run())
                    await asyncio.to_thread(delivered.wait, 180)
                    enricher.stop()
                    await task

            worker = threading.Thread(target=asyncio.run, args=(enrich(),), daemon=True)
            worker.start()
            try:
                # 3. Mutator and fan-out (the pipeline's), then this test's dispatcher.
                wait_for(received, timeout=180, interval=0.5, what="the target's request")
            finally:
                delivered.set()
                worker.join(60)
    finally:
        for stop in stops:
            stop()

    # The target's request carries the trace: same trace id, its parent the client span.
    (request,) = received()
    headers = {k.lower(): v for k, v in request.headers.items()}
    _, sent_trace, sent_parent, _ = headers["traceparent"].split("-")
    assert sent_trace == trace_id

    done = list(spans.get_finished_spans())
    ours = [s for s in done if hex_id(s.context.trace_id, 32) == trace_id]
    by_name = {s.name: s for s in ours}
    assert {"ingest.webhook", "ingest.enrich", "dispatcher.deliver", "HTTP POST"} <= set(by_name)
    webhook, enrich_span = by_name["ingest.webhook"], by_name["ingest.enrich"]
    deliver, http = by_name["dispatcher.deliver"], by_name["HTTP POST"]
    assert webhook.parent is None  # the trace starts at the webhook
    assert enrich_span.parent is not None and enrich_span.parent.span_id == webhook.context.span_id
    # Mutator and fan-out passed the enricher's context on through the mutation and the job.
    assert deliver.parent is not None and deliver.parent.span_id == enrich_span.context.span_id
    assert http.parent is not None and http.parent.span_id == deliver.context.span_id
    assert sent_parent == hex_id(http.context.span_id, 16)
    # Stable keys as attributes.
    key = f"product:{product}"
    assert webhook.attributes is not None and webhook.attributes["event_id"] == f"trace-{unique}"
    assert enrich_span.attributes is not None and enrich_span.attributes["entity_key"] == key
    assert deliver.attributes is not None and deliver.attributes["integration"] == integration
    assert http.attributes is not None and http.attributes["http.response.status_code"] == 200

    # `hub trace` shows the trace id on the snapshot, the mutation, the job and the status.
    def traced() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for event in collect(hub_settings, key).events:
            if "trace_id" in event.data:
                found.setdefault(event.stage, set()).add(event.data["trace_id"])
        return found

    def every_stage() -> dict[str, set[str]] | None:
        found = traced()
        return found if {"snapshot", "mutation", "job", "status"} <= set(found) else None

    stages = wait_for(every_stage, timeout=60, interval=1, what="trace ids on every record")
    assert stages is not None
    assert all(ids == {trace_id} for ids in stages.values()), stages
    # ... and so does the console's entity page.
    console = console_settings(unique)
    with TestClient(console_app(hub_settings, console)) as client:
        sign_in(client, f"view-{unique}", VIEWER_PASSWORD)
        page = client.get("/entities", params={"q": key})
    assert page.status_code == 200
    assert f"trace {trace_id}" in page.text
