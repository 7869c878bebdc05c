"""Mutator peak RSS and rate by catalogue size, memory store against RocksDB store, same run."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psutil
from confluent_kafka import Consumer

from bench.bench_mutator import V1, V2, _count_rate, product, snapshot
from pim_hub.devstack import embedded as runtime
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import apply_topics, consumer_config, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.processing import SnapshotProcessor

LOCALES = ["en_US", "fr_FR", "de_DE", "es_ES"]
STORES = ("memory", "rocksdb")


def make_product(index: int, rnd: random.Random, version: str) -> dict[str, Any]:
    """A product whose indexed state is about 15 KB of JSON (60 attributes, 20 localised)."""
    values: dict[str, list[dict[str, Any]]] = {
        "sku": [{"locale": None, "scope": None, "data": f"SKU-{index}"}],
    }
    for a in range(60):
        locales: list[str | None] = list(LOCALES) if a % 3 == 0 else [None]
        values[f"attribute_{a:02d}"] = [
            {
                "locale": loc,
                "scope": "ecommerce",
                "data": f"value {rnd.randint(1, 10**9)} " + "lorem ipsum dolor sit amet " * 3,
            }
            for loc in locales
        ]
    return product(index, values, version)


def state_bytes(serde: Serde, value: bytes) -> int:
    """Size of the table value the mutator stores for this snapshot (a create)."""
    outcome = SnapshotProcessor(serde).process(b"k", value, lambda _key: None)
    assert outcome.new_state is not None
    return len(orjson.dumps(outcome.new_state))


def _hwm_bytes(pid: int) -> int:
    """The kernel's peak resident set size of a process (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _run_mutator(
    settings: Settings, env: dict[str, str], expected: int, restart_key_value: tuple[str, bytes]
) -> dict[str, Any]:
    """Start `hub mutator`, wait for `expected` mutations, then restart it on its data dir.

    The restart measures recovery: its peak RSS and the seconds from the start of the new
    process to the mutation of one more (changed) snapshot.
    """
    timeout = 1800.0
    reader = Consumer(consumer_config(settings, f"bench.mem.{uuid.uuid4().hex[:8]}"))
    reader.subscribe([topics.MUTATIONS])
    supervisor = Supervisor(env=env, log_dir=Path(tempfile.mkdtemp(prefix="bench-mutator-mem-")))
    try:
        service = supervisor.start("mutator", "mutator")
        pid = service.process.pid
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            # RSS over the run: a rise with the records read is state, a plateau is buffers.
            while not done.wait(1.0):
                try:
                    samples.append(psutil.Process(pid).memory_info().rss / 2**20)
                except psutil.Error:
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            rate = _count_rate(reader, expected, timeout, supervisor.check, pid=pid)
        finally:
            done.set()
            sampler.join()
        figures: dict[str, Any] = {
            "per_s": round(rate.per_s, 1),
            "cpu_us_per_snapshot": round(rate.cpu_us or 0),
            "peak_rss_mb": round(_hwm_bytes(pid) / 2**20, 1),
            "rss_mb": round(psutil.Process(pid).memory_info().rss / 2**20, 1),
            # Ten RSS samples evenly spread over the run (MB).
            "rss_trace_mb": [round(samples[i * len(samples) // 10]) for i in range(10)]
            if len(samples) >= 10
            else [round(x) for x in samples],
        }
        supervisor.stop(service)
        data_dir = Path(env["HUB_MUTATOR_DATA_DIR"])
        disk = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
        figures["data_dir_mb"] = round(disk / 2**20, 1)
        started = time.monotonic()
        service = supervisor.start("mutator", "mutator")
        producer = make_producer(settings)
        key, value = restart_key_value
        producer.produce(topics.SNAPSHOTS, value, key=key)
        producer.flush(30)
        _count_rate(reader, 1, timeout, supervisor.check)
        figures["restart_to_mutation_s"] = round(time.monotonic() - started, 1)
        figures["restart_peak_rss_mb"] = round(_hwm_bytes(service.process.pid) / 2**20, 1)
        return figures
    finally:
        supervisor.stop_all()
        reader.close()


def run(sizes: list[int], stores: list[str], seed: int = 5) -> list[dict[str, Any]]:
    """For each size and store: a broker of its own, n product creates, one mutator reads them.

    The stores alternate within a size, so both see the same machine load as far as can be.
    """
    serde = Serde()
    rows: list[dict[str, Any]] = []
    for n in sizes:
        row: dict[str, Any] = {"products": n}
        for store in stores:
            broker = runtime.start_tansu()
            try:
                settings = Settings(kafka_bootstrap=broker.bootstrap)
                apply_topics(settings)
                rnd = random.Random(seed)
                producer = make_producer(settings)
                for i in range(n):
                    key, value = snapshot(serde, make_product(i, rnd, V1), V1)
                    if i == 0:
                        row["state_bytes"] = state_bytes(serde, value)
                        row["snapshot_bytes"] = len(value)
                    producer.produce(topics.SNAPSHOTS, value, key=key)
                    producer.poll(0)
                producer.flush(120)
                edited = make_product(0, random.Random(seed), V2)
                edited["values"]["sku"][0]["data"] = "SKU-0-changed"
                changed = snapshot(serde, edited, V2)
                env = {
                    "HUB_KAFKA_BOOTSTRAP": broker.bootstrap,
                    "HUB_MUTATOR_APP_ID": f"bench-mem-{store}",
                    "HUB_MUTATOR_DATA_DIR": tempfile.mkdtemp(prefix=f"bench-mutator-{store}-"),
                    "HUB_MUTATOR_STORE": store,
                    "HUB_LOG_LEVEL": "WARNING",
                }
                row[store] = _run_mutator(settings, env, n, changed)
            finally:
                broker.stop()
            print(json.dumps({"products": n, store: row[store]}), file=sys.stderr, flush=True)
        if "memory" in row and "rocksdb" in row:
            row["rocksdb_vs_memory_per_s"] = round(
                row["rocksdb"]["per_s"] / row["memory"]["per_s"], 3
            )
        rows.append(row)
    return rows


def main() -> None:
    """Print one JSON line per catalogue size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[2000, 10000, 30000])
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated")
    args = parser.parse_args()
    for row in run(args.sizes, args.stores.split(",")):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
