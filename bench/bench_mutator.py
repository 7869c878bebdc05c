"""Mutator throughput on a real broker against a plain passthrough and a naive Faust agent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import orjson
from confluent_kafka import Consumer, TopicPartition

from pim_hub.devstack import embedded as runtime
from pim_hub.devstack.supervisor import Supervisor, _die_with_parent
from pim_hub.runtime.kafka import apply_topics, consumer_config, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.topics import TopicSpec
from pim_hub.services.mutator.app import _transport_class, faust_config
from pim_hub.services.mutator.processing import SnapshotProcessor
from pim_hub.services.mutator.settings import MutatorSettings

PASSTHROUGH_TOPIC = "bench.passthrough"
NAIVE_TOPIC = "bench.naive-faust"
V1 = "2024-05-01T10:00:00+00:00"
V2 = "2024-05-02T10:00:00+00:00"


def make_product(index: int, rnd: random.Random, version: str) -> dict[str, Any]:
    """A product of about 1.5 KB of JSON: 12 attributes, some localised."""
    values: dict[str, list[dict[str, Any]]] = {
        "sku": [{"locale": None, "scope": None, "data": f"SKU-{index}"}],
        "price": [
            {
                "locale": None,
                "scope": None,
                "data": [{"amount": f"{rnd.randint(1, 9999) / 100:.2f}", "currency": "EUR"}],
                "attribute_type": "pim_catalog_price_collection",
            }
        ],
    }
    for a in range(10):
        locales: list[str | None] = ["en_US", "fr_FR"] if a % 3 == 0 else [None]
        values[f"attr_{a}"] = [
            {"locale": loc, "scope": None, "data": f"value {rnd.randint(1, 10**6)}"}
            for loc in locales
        ]
    return product(index, values, version)


def product(index: int, values: dict[str, list[dict[str, Any]]], version: str) -> dict[str, Any]:
    """A product payload with the given values (the benchmarks' common envelope)."""
    return {
        "uuid": str(uuid.UUID(int=index + 1)),
        "identifier": f"SKU-{index}",
        "enabled": True,
        "family": "clothing",
        "categories": [f"cat_{index % 40}", f"cat_{(index + 7) % 40}"],
        "values": values,
        "updated": version,
    }


def snapshot(serde: Serde, payload: dict[str, Any], version: str) -> tuple[str, bytes]:
    """The pim.snapshots record (key, Avro value) of one full product snapshot."""
    key = f"product:{payload['uuid']}"
    record = {
        "event_id": str(uuid.uuid4()),
        "entity_type": "product",
        "entity_key": key,
        "source_version": version,
        "origin": "sync",
        "payload": orjson.dumps(payload).decode(),
        "delta": None,
        "received_at": 1_714_557_600_000,
        "correlation_id": None,
    }
    return key, serde.encode("Snapshot", record, topic=topics.SNAPSHOTS)


def _snapshots(n: int, seed: int) -> list[tuple[str, bytes]]:
    # Half creates, half updates of the same entities (one changed value each), interleaved
    # per entity so every snapshot yields exactly one mutation.
    rnd = random.Random(seed)
    serde = Serde()
    out: list[tuple[str, bytes]] = []
    for i in range(n // 2):
        first = make_product(i, rnd, V1)
        second = orjson.loads(orjson.dumps(first))
        second["values"]["attr_1"][0]["data"] = f"changed {i}"
        second["updated"] = V2
        out += [snapshot(serde, first, V1), snapshot(serde, second, V2)]
    return out


@dataclass
class Rate:
    """Output messages/s, and the worker's CPU seconds per message over the same interval."""

    per_s: float
    cpu_us: float | None = None


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count_rate(
    consumer: Consumer,
    expected: int,
    timeout: float,
    alive: Any = None,
    trace: list[tuple[int, float]] | None = None,
    pid: int | None = None,
) -> Rate:
    """Messages/s from the first to the last of `expected` messages read by consumer.

    With pid, also that process's CPU time per message over the same interval: on a
    shared machine the rate varies with the load, the CPU per message much less.
    """
    first = last = 0.0
    cpu_first = cpu_last = 0.0
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {seen} of {expected} messages within {timeout:.0f}s")
        if alive is not None:
            alive()
        msgs = consumer.consume(1000, 0.2)
        for msg in msgs:
            if msg.error() is not None:
                continue
            ts = time.perf_counter()
            if seen == 0:
                first = ts
                cpu_first = _cpu_s(pid) if pid is not None else 0.0
            seen += 1
            last = ts
            if trace is not None and seen % 1000 == 0:
                trace.append((seen, round(ts - first, 2)))
        if msgs and pid is not None:
            cpu_last = _cpu_s(pid)
    rate = (seen - 1) / (last - first) if last > first else float("inf")
    cpu_us = (cpu_last - cpu_first) / (seen - 1) * 1e6 if pid is not None and seen > 1 else None
    return Rate(rate, cpu_us)


def _core_cpu_us(records: list[tuple[str, bytes]]) -> float:
    """CPU us per snapshot of the mutator's own work, with no broker at all.

    Decode, decide against the stored state (a dict here) and encode the mutation: a lower
    bound of what any transport around the core costs per snapshot in one process.
    """
    serde = Serde()
    processor = SnapshotProcessor(serde)
    states: dict[str, Any] = {}
    start = time.process_time()
    for key, value in records:
        out = processor.process(key.encode(), value, states.get)
        if out.new_state is not None:
            states[out.entity_key] = out.new_state
        if out.mutation is not None:
            serde.encode("Mutation", out.mutation, topic=topics.MUTATIONS)
    return (time.process_time() - start) / len(records) * 1e6


def _passthrough(settings: Settings, expected: int, timeout: float) -> Rate:
    """Consume pim.snapshots → Avro + JSON decode → produce; rate measured at its output."""
    serde = Serde()
    consumer = Consumer(consumer_config(settings, f"bench.passthrough.{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topics.SNAPSHOTS])
    producer = make_producer(settings)
    reader = Consumer(consumer_config(settings, f"bench.reader.{uuid.uuid4().hex[:8]}"))
    reader.subscribe([PASSTHROUGH_TOPIC])
    done = 0
    first = cpu_first = 0.0
    deadline = time.monotonic() + timeout
    try:
        while done < expected and time.monotonic() < deadline:
            msgs = consumer.consume(500, 0.2)
            if msgs and not first:
                first = time.perf_counter()
                cpu_first = time.process_time()
            offsets: dict[tuple[str, int], int] = {}
            for msg in msgs:
                if msg.error() is not None:
                    continue
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                assert topic is not None and partition is not None and offset is not None
                offsets[(topic, partition)] = offset + 1
                snap = serde.decode("Snapshot", msg.value())
                payload = orjson.loads(snap["payload"])
                producer.produce(PASSTHROUGH_TOPIC, orjson.dumps(payload), key=msg.key())
                done += 1
            producer.poll(0)
            if offsets:
                # Like the mutator: outputs acknowledged before the offsets move.
                producer.flush(30)
                consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                )
        producer.flush(30)
        elapsed = time.perf_counter() - first
        cpu_us = (time.process_time() - cpu_first) / max(done, 1) * 1e6
        _count_rate(reader, expected, timeout)  # every record really arrived
        return Rate(done / elapsed, cpu_us)
    finally:
        consumer.close()
        reader.close()


def naive_faust_app(settings: Settings, mutator: MutatorSettings, app_id: str) -> faust.App:
    """The naive Faust agent: per event, Avro + JSON decode, a table write and one send.

    Same Faust settings and transport as the mutator (memory store, aiokafka): the rate of
    the framework doing the least a stateful agent does.
    """
    app = faust.App(app_id, **faust_config(settings, mutator))
    app.transport = _transport_class(settings)(app.conf.broker_consumer, app)
    serde = Serde()
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "internal": False,
    }
    source = app.topic(topics.SNAPSHOTS, **raw)
    out = app.topic(NAIVE_TOPIC, **raw)
    table = app.Table("naive-state", key_type=bytes, value_type=bytes, default=None)

    @app.agent(source)
    async def naive(stream: Any) -> None:
        async for key, value in stream.items():
            snap = serde.decode("Snapshot", value)
            payload = orjson.dumps(orjson.loads(snap["payload"]))
            table[key] = payload
            await out.send(key=key, value=payload)

    return app


def _naive_faust_worker(app_id: str) -> None:
    """Child process: run the naive Faust agent until SIGTERM."""
    from faust import Worker

    app = naive_faust_app(Settings(), MutatorSettings(), app_id)
    Worker(app, loglevel="warn", quiet=True).execute_from_commandline()


def _naive_faust(env: dict[str, str], expected: int, timeout: float) -> Rate:
    """Run the naive Faust agent in a child process and measure messages/s at its output."""
    settings = Settings(kafka_bootstrap=env["HUB_KAFKA_BOOTSTRAP"])
    reader = Consumer(consumer_config(settings, f"bench.naive.{uuid.uuid4().hex[:8]}"))
    reader.subscribe([NAIVE_TOPIC])
    log = Path(tempfile.mkdtemp(prefix="bench-naive-faust-")) / "worker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_mutator",
                "naive-faust",
                f"bench-naive-{uuid.uuid4().hex[:6]}",
            ],
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(
                f"naive Faust worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )

    try:
        return _count_rate(reader, expected, timeout, alive, pid=proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        reader.close()


def _mutator(
    settings: Settings,
    env: dict[str, str],
    expected: int,
    timeout: float,
    trace: list[tuple[int, float]],
) -> Rate:
    """Start `hub mutator` and measure mutations/s on hub.mutations."""
    reader = Consumer(consumer_config(settings, f"bench.mutations.{uuid.uuid4().hex[:8]}"))
    reader.subscribe([topics.MUTATIONS])
    supervisor = Supervisor(env=env, log_dir=Path(tempfile.mkdtemp(prefix="bench-mutator-")))
    try:
        service = supervisor.start("mutator", "mutator")
        return _count_rate(reader, expected, timeout, supervisor.check, trace, service.process.pid)
    finally:
        supervisor.stop_all()
        reader.close()


def run(n: int = 6000, seed: int = 11, timeout: float = 300.0) -> dict[str, Any]:
    """Produce n snapshots once, then time the passthrough, a naive Faust agent and the mutator.

    All three read the same records from pim.snapshots on the same embedded broker in the
    same run, one after the other; each rate runs from its first output record to its last
    (start-up excluded).

    Returns:
        Figures: message size, passthrough, naive Faust and mutator rates and their ratios.
    """
    broker = runtime.start_tansu()
    try:
        env = {
            "HUB_KAFKA_BOOTSTRAP": broker.bootstrap,
            "HUB_MUTATOR_APP_ID": f"bench-mutator-{uuid.uuid4().hex[:6]}",
            "HUB_MUTATOR_DATA_DIR": tempfile.mkdtemp(prefix="bench-mutator-data-"),
            "HUB_LOG_LEVEL": "WARNING",
        }
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        apply_topics(settings)
        apply_topics(
            settings,
            [
                TopicSpec(PASSTHROUGH_TOPIC, settings.topic_partitions, -1),
                TopicSpec(NAIVE_TOPIC, settings.topic_partitions, -1),
            ],
        )
        records = _snapshots(n, seed)
        producer = make_producer(settings)
        for key, value in records:
            producer.produce(topics.SNAPSHOTS, value, key=key)
            producer.poll(0)
        producer.flush(60)
        passthrough = _passthrough(settings, len(records), timeout)
        naive = _naive_faust(env, len(records), timeout)
        trace: list[tuple[int, float]] = []
        mutator = _mutator(settings, env, len(records), timeout, trace)
        core_us = _core_cpu_us(records)
    finally:
        broker.stop()
    payload_bytes = sum(len(v) for _, v in records) / len(records)
    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "snapshots": len(records),
        "snapshot_bytes": round(payload_bytes),
        "partitions": settings.topic_partitions,
        "passthrough_per_s": round(passthrough.per_s),
        "mutator_per_s": round(mutator.per_s),
        "naive_faust_per_s": round(naive.per_s),
        "mutator_vs_passthrough": round(mutator.per_s / passthrough.per_s, 3),
        "naive_faust_vs_passthrough": round(naive.per_s / passthrough.per_s, 3),
        "mutator_vs_naive_faust": round(mutator.per_s / naive.per_s, 3),
        # CPU of the worker process (all threads) per record, first to last output record.
        "mutator_cpu_us_per_snapshot": round(mutator.cpu_us or 0),
        "naive_faust_cpu_us_per_snapshot": round(naive.cpu_us or 0),
        "passthrough_cpu_us_per_snapshot": round(passthrough.cpu_us or 0),
        "mutator_vs_passthrough_cpu": round((passthrough.cpu_us or 0) / (mutator.cpu_us or 1), 3),
        # The core alone (no Kafka, no Faust), in CPU per snapshot against the passthrough's:
        # the most any transport around it could reach in one process.
        "core_cpu_us_per_snapshot": round(core_us),
        "core_only_vs_passthrough_cpu": round((passthrough.cpu_us or 0) / core_us, 3),
        "mutator_progress": trace,  # (mutations seen, seconds since the first): steady or not
    }


def main() -> None:
    """Print the figures (or, as `naive-faust APP_ID`, run the naive Faust worker)."""
    if sys.argv[1:2] == ["naive-faust"]:
        _naive_faust_worker(sys.argv[2])
        return
    result = run()
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
