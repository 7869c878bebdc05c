"""The mutator's agents record their spans and carry the trace from snapshot to mutation to
job (Faust's agent test context: no broker; the outputs are captured)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pim_hub.registry.model import IntegrationTarget
from pim_hub.runtime import tracing
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator import app as mutator_app
from pim_hub.services.mutator.app import Role
from pim_hub.services.mutator.settings import MutatorSettings

UID = "00000000-0000-4000-8000-000000000777"
KEY = f"product:{UID}"
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
VERSION = "2024-05-01T10:00:00+00:00"


class Captured:
    """BatchOutput's stand-in: keeps each record (topic, value, key, headers)."""

    instances: list[Captured] = []

    def __init__(self, settings: Settings) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, Any]] = []
        Captured.instances.append(self)

    def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, headers: Any = None
    ) -> None:
        self.sent.append((topic, value, key, headers))

    async def acknowledged(self) -> None:
        return None


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setattr(mutator_app, "BatchOutput", Captured)
    Captured.instances.clear()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)


def make_app(tmp_path: Path, role: Role) -> faust.App:
    return mutator_app.make_app(
        Settings(kafka_bootstrap="127.0.0.1:9"),
        MutatorSettings(app_id=f"trace-{tmp_path.name}", data_dir=str(tmp_path), store="memory"),
        role,
    )


async def run_agent(app: Any, value: bytes, key: bytes, headers: Any) -> None:
    # The live agent: a `mutate` worker also runs `mutate_bulk` for pim.snapshots.bulk.
    (agent,) = [a for a in app.agents.values() if not a.name.endswith("_bulk")]
    async with agent.test_context() as running:
        await running.put(value, key=key, headers=headers)
        for _ in range(100):  # the agent takes batches within 50 ms
            if any(c.sent for c in Captured.instances):
                break
            await asyncio.sleep(0.05)


def test_snapshot_to_mutation_to_job_is_one_trace(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    payload = {
        "uuid": UID,
        "identifier": "SKU-777",
        "enabled": True,
        "family": None,
        "categories": [],
        "values": {},
        "updated": VERSION,
    }
    snapshot = Serde().encode(
        "Snapshot", snapshot_record("product", KEY, payload, VERSION, "external")
    )
    outside = [("traceparent", f"00-{TRACE}-{PARENT}-01".encode())]

    async def mutate() -> tuple[bytes, Any]:
        app = make_app(tmp_path, "mutate")
        await run_agent(app, snapshot, KEY.encode(), outside)
        # The mutator has an output per agent (live and bulk snapshots): one record in all.
        ((topic, value, key, headers),) = [r for c in Captured.instances for r in c.sent]
        assert (topic, key) == (topics.MUTATIONS, KEY.encode())
        assert value is not None
        return value, headers

    mutation, mutation_headers = asyncio.run(mutate())
    Captured.instances.clear()

    async def fan_out() -> list[tuple[str, bytes | None, bytes | None, Any]]:
        app = make_app(tmp_path, "fanout")
        targets: list[IntegrationTarget] = app.hub_targets  # type: ignore[attr-defined]
        targets.append(IntegrationTarget("shop", "webhook", True, frozenset({"product"})))
        await run_agent(app, mutation, KEY.encode(), mutation_headers)
        return Captured.instances[-1].sent

    jobs = asyncio.run(fan_out())
    assert len(jobs) == 1 and jobs[0][0].startswith("hub.jobs.")

    done = {s.name: s for s in spans.get_finished_spans()}
    mutate_span, fanout_span = done["mutator.mutate"], done["mutator.fanout"]
    # The outside producer's traceparent is the mutation's parent; the job's is the mutation.
    assert format(mutate_span.context.trace_id, "032x") == TRACE
    assert mutate_span.parent is not None and format(mutate_span.parent.span_id, "016x") == PARENT
    assert fanout_span.parent is not None
    assert fanout_span.parent.span_id == mutate_span.context.span_id
    assert mutate_span.attributes is not None and mutate_span.attributes["entity_key"] == KEY
    assert fanout_span.attributes is not None and fanout_span.attributes["integration"] == "shop"
    # What the records carry: each the span of the stage that wrote it.
    assert tracing.trace_id(mutation_headers) == TRACE
    (_, _, _, job_headers) = jobs[0]
    sent = dict(job_headers)["traceparent"].decode().split("-")
    assert sent[1] == TRACE and sent[2] == format(fanout_span.context.span_id, "016x")
