"""What the embedded broker's CPU pays for: fetch and produce requests, not records.

Each phase runs against a fresh embedded broker (Tansu, memory storage) that exports its
own request counts (bench.broker_metrics); the broker process's CPU seconds are read around
each phase. Measured:

- an idle consumer (nothing to read) per second of idling: one topic of 6 partitions with
  the hub's 50 ms fetch wait, the same with 500 ms, and four topics (24 partitions);
- produce requests of 1 record and of 100 records (flushed one by one);
- the hub itself standing idle (`stack=True`): every service of the demo started and nothing
  to do, so what remains is its consumers' fetches.

A production broker (Apache Kafka, MSK, Confluent) parks a fetch with nothing to return
until data arrives or the wait runs out, at no CPU; the embedded broker looks at every
partition of a waiting fetch again and again until the wait runs out, and answers only then.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench import broker_metrics
from pim_hub.devstack.embedded import Broker, start_tansu

IDLE_S = 8.0
PARTITIONS = 6


def _phase(
    metrics: broker_metrics.BrokerMetrics, broker: Broker, work: Callable[[], None]
) -> tuple[float, dict[str, float]]:
    """Broker CPU seconds and counters grown while `work` ran."""
    assert broker.process is not None
    proc = psutil.Process(broker.process.pid)

    def cpu() -> float:
        t = proc.cpu_times()
        return float(t.user + t.system)

    before, cpu0 = metrics.snapshot(), cpu()
    work()
    after, cpu1 = metrics.snapshot(), cpu()
    return cpu1 - cpu0, broker_metrics.difference(before, after)


def _idle(bootstrap: str, topics: list[str], wait_ms: int) -> Callable[[], None]:
    def work() -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"idle-{wait_ms}-{len(topics)}-{time.monotonic_ns()}",
                "fetch.wait.max.ms": wait_ms,
                "auto.offset.reset": "latest",
                "session.timeout.ms": 6000,
            }
        )
        consumer.subscribe(topics)
        deadline = time.monotonic() + IDLE_S
        while time.monotonic() < deadline:
            consumer.poll(0.1)
        consumer.close()

    return work


def _produce(bootstrap: str, topic: str, requests: int, records: int) -> Callable[[], None]:
    def work() -> None:
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "lz4",
                "linger.ms": 1000,  # each flush below sends one request
            }
        )
        for _ in range(requests):
            for i in range(records):
                producer.produce(topic, b"v" * 500, key=str(i), partition=0)
            producer.flush(10)

    return work


def _requests(grown: dict[str, float], api: str) -> float:
    return sum(v for k, v in grown.items() if k.startswith(f"requests.{api} "))


def _micro(metrics: broker_metrics.BrokerMetrics) -> dict[str, Any]:
    broker = start_tansu()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        names = ["idle-a", "idle-b", "idle-c", "idle-d", "produce-1", "produce-100"]
        for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names]).values():
            future.result(30)
        out: dict[str, Any] = {}
        for label, topics, wait in (
            ("idle_6_partitions_50ms", names[:1], 50),
            ("idle_6_partitions_500ms", names[:1], 500),
            ("idle_24_partitions_50ms", names[:4], 50),
        ):
            cpu, grown = _phase(metrics, broker, _idle(broker.bootstrap, topics, wait))
            fetches = _requests(grown, "Fetch")
            out[f"{label}_cpu_ms_per_s"] = round(1000 * cpu / IDLE_S, 1)
            out[f"{label}_fetches_per_s"] = round(fetches / IDLE_S, 1)
            out[f"{label}_cpu_ms_per_fetch"] = round(1000 * cpu / max(fetches, 1), 2)
            out[f"{label}_storage_reads_per_fetch"] = round(
                grown.get("storage.get_opts", 0) / max(fetches, 1), 1
            )
        for records, topic in ((1, names[4]), (100, names[5])):
            cpu, grown = _phase(metrics, broker, _produce(broker.bootstrap, topic, 500, records))
            produced = _requests(grown, "Produce")
            out[f"produce_{records}_record_cpu_us_per_request"] = round(
                1e6 * cpu / max(produced, 1), 1
            )
        out["idle_wait_500_vs_50_cpu_ratio"] = round(
            out["idle_6_partitions_500ms_cpu_ms_per_s"]
            / out["idle_6_partitions_50ms_cpu_ms_per_s"],
            3,
        )
        out["idle_24_vs_6_partitions_cpu_ratio"] = round(
            out["idle_24_partitions_50ms_cpu_ms_per_s"]
            / out["idle_6_partitions_50ms_cpu_ms_per_s"],
            2,
        )
        out["produce_100_vs_1_record_cpu_ratio"] = round(
            out["produce_100_record_cpu_us_per_request"]
            / out["produce_1_record_cpu_us_per_request"],
            2,
        )
        return out
    finally:
        broker.stop()


def _idle_hub(metrics: broker_metrics.BrokerMetrics, seconds: float = 20.0) -> dict[str, Any]:
    """The broker's CPU while every service of the demo runs with nothing to do."""
    from pim_hub.devstack import demo
    from pim_hub.devstack.stack import local_stack

    work = Path(tempfile.mkdtemp(prefix="pimhub-bench-broker-"))
    env = demo.stack_env({"HUB_LOG_LEVEL": "WARNING"})
    with local_stack(f"pimhub_bench_broker_{os.getpid()}", log_dir=work, extra_env=env) as stack:
        demo.start_services(stack, "http://127.0.0.1:9", bulk="async", replicas=1)
        time.sleep(25)  # the groups join and the retry tiers settle
        cpu, grown = _phase(metrics, stack.rt.broker, lambda: time.sleep(seconds))
    return {
        "idle_hub_broker_cores": round(cpu / seconds, 3),
        "idle_hub_fetches_per_s": round(_requests(grown, "Fetch") / seconds, 1),
        "idle_hub_storage_reads_per_s": round(grown.get("storage.get_opts", 0) / seconds),
    }


def run(stack: bool = True) -> dict[str, Any]:
    """The broker's CPU per idle second, per fetch and per produce request, and the hub idle."""
    with broker_metrics.BrokerMetrics() as metrics, broker_metrics.exported_to(metrics):
        result = _micro(metrics)
        if stack:
            result.update(_idle_hub(metrics))
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
