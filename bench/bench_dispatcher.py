"""Benchmark of the dispatcher: no-op driver vs a plain consume → produce passthrough, and the
webhook driver against a local HTTP sink at in-flight limits 1, 8 and 32 (a quick sink, and
one that takes 20 ms to answer).

Run: .venv/bin/python -m bench.bench_dispatcher [jobs] [rounds]   (starts its own broker and database)

The baseline (`passthrough_jobs_per_s`) is what any consumer of these records must do at the
least: consume, decode each job (Avro, as the dispatcher must), encode a record and produce
it, commit once the writes are acknowledged. `raw_passthrough_jobs_per_s` copies the bytes
without looking at them, for reference. The passthrough and the no-op dispatcher run
alternately, `rounds` times each (the machine's load drifts). A round is one passthrough
run and the dispatcher run right after it, on records of the same shape and the same
machine state: `noop_vs_passthrough` is the median of the rounds' ratios
(`noop_vs_passthrough_by_round` lists them), and `noop_vs_passthrough_best` divides the
best of each, which pairs runs of different rounds. The jobs/s and CPU figures are each
side's best run; `*_cpu_us_per_job` is the process's CPU time per job of that run. The
dispatcher is tuned as `hub dispatcher` tunes it (`quiet_gc`).

Where the gap lies, in the same rounds: `noop_postgres_cpu_us_per_job` is PostgreSQL's CPU
during a no-op run (its version guard's locks, reads and recordings), on the same cores as
the dispatcher. Each round also runs the no-op dispatcher once more with `NoDatabaseGuard`,
a guard that decides against nothing delivered and records nothing:
`noop_without_guard_vs_passthrough` (median; `..._by_round`) is the dispatcher's own
machinery against the passthrough, without the guard's database work. It is a diagnostic, not
the target: the guard is part of what the dispatcher must do. The webhook
figures use a keep-alive HTTP/1.1 sink in a child process (`pim_hub.devstack.sink.HttpSink` answers from
one thread per connection: at 32 in flight it would measure the sink, not the dispatcher).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from unittest import mock

import psutil
from confluent_kafka import Consumer, TopicPartition
from pydantic import BaseModel

from pim_hub.devstack import embedded as runtime
from pim_hub.drivers.base import DeliveryResult, Driver, IntegrationContext
from pim_hub.drivers.discovery import discover
from pim_hub.drivers.webhook.driver import ALL_ENTITY_TYPES
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime import db
from pim_hub.runtime.kafka import apply_topics, consumer_config, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.runtime.tuning import DISPATCHER_FULL_GC_EVERY, quiet_gc
from pim_hub.schemas import topics
from pim_hub.schemas.events import Job
from pim_hub.schemas.serde import Serde
from pim_hub.services.dispatcher import app
from pim_hub.services.dispatcher.app import Dispatcher
from pim_hub.services.dispatcher.core.guard import Delivered
from pim_hub.services.dispatcher.guard_store import Recording
from pim_hub.services.dispatcher.settings import DispatcherOptions


class NoopConfig(BaseModel):
    """Nothing to configure."""


class NoopDriver(Driver):
    """Delivers instantly."""

    name: ClassVar[str] = "No-op"
    key: ClassVar[str] = "noop"
    version: ClassVar[str] = "0"
    description: ClassVar[str] = "benchmark driver"
    supported_entity_types: ClassVar[frozenset[str]] = ALL_ENTITY_TYPES
    config_model: ClassVar[type[BaseModel]] = NoopConfig

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Nothing to do."""
        return DeliveryResult.delivered()


class _NoTransaction:
    pending_older: ClassVar[dict[str, Any]] = {}  # nothing pending in other lanes

    async def record(self, rows: Sequence[Recording]) -> None:
        """Nothing is kept."""

    def settle(self, jobs: Sequence[tuple[str, str]]) -> None:
        """Nothing is pending."""


class NoDatabaseGuard:
    """The guard without PostgreSQL, for the diagnostic figure only: nothing was delivered."""

    def __init__(self, pool: Any, synchronous_commit: bool = True) -> None:
        del pool, synchronous_commit

    @asynccontextmanager
    async def reading(
        self,
        integration_id: str,
        entity_keys: list[str],
        job_ids: list[str],
        lane: tuple[str, float] | None = None,
    ) -> AsyncIterator[tuple[_NoTransaction, dict[str, dict[str, Delivered]], set[str]]]:
        """No locks, nothing read."""
        yield _NoTransaction(), {}, set()

    async def register(self, jobs: Sequence[Any]) -> None:
        """Nothing is kept."""


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine so far.

    With the children's: a backend that has ended (the dispatcher's pool closes with it)
    leaves its CPU time in the postmaster's children times.
    """
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        t = proc.info["cpu_times"]
        if (proc.info["name"] or "").startswith("postgres") and t:
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _jobs(
    integration: str, driver: str, priority: str, n: int, prefix: str = "b"
) -> list[dict[str, Any]]:
    from pim_hub.devstack.fixtures import change, job_record, version

    return [
        job_record(
            integration, driver, priority, f"product:{prefix}{i}", [change("name", i)], version(i)
        )
        for i in range(n)
    ]


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, float]:
    """(jobs/s the call returns, process CPU seconds it took)."""
    cpu = time.process_time()
    rate = fn(*args, **kwargs)
    return rate, time.process_time() - cpu


def _produce(settings: Settings, topic: str, records: list[dict[str, Any]]) -> None:
    serde, producer = Serde(), make_producer(settings)
    for rec in records:
        producer.produce(
            topic,
            serde.encode("Job", rec, topic=topic),
            key=f"{rec['integration_id']}|{rec['mutation']['entity_key']}",
        )
        producer.poll(0)
    producer.flush(60)


def passthrough(settings: Settings, source: str, n: int, decode: bool = True) -> float:
    """jobs/s of consume → decode → encode → produce, commit after acks; same broker.

    With decode=False the bytes are copied as they are.
    """
    target = f"bench.passthrough.{uuid.uuid4().hex[:8]}"
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    from pim_hub.runtime.kafka import admin_client

    admin = admin_client(settings)  # keep it alive until the topic exists
    for fut in admin.create_topics([NewTopic(target, 6, 1)]).values():
        fut.result()
    consumer = Consumer(consumer_config(settings, f"bench-pass-{uuid.uuid4().hex}"))
    consumer.subscribe([source])
    producer = make_producer(settings)
    serde = Serde()
    done, start = 0, None
    while done < n:
        msgs = consumer.consume(500, 0.5)
        msgs = [m for m in msgs if m.error() is None]
        if not msgs:
            continue
        start = start or time.perf_counter()
        for m in msgs:
            value = m.value()
            if decode:
                value = serde.encode("Job", serde.decode("Job", value), topic=target)
            producer.produce(target, value, key=m.key())
            producer.poll(0)
        producer.flush(30)
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            topic, part, off = m.topic(), m.partition(), m.offset()
            assert topic is not None and part is not None and off is not None
            last[(topic, part)] = off
        consumer.commit(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
            asynchronous=False,
        )
        done += len(msgs)
    assert start is not None
    took = time.perf_counter() - start
    consumer.close()
    return n / took


def dispatch(settings: Settings, driver: type[Driver], priority: str, n: int, **opts: Any) -> float:
    """jobs/s of a dispatcher delivering n jobs, from its first driver call to its last status.

    Not from its start: joining the group and the first fetch are not what is measured.
    """
    cat = discover()
    cat.drivers[driver.key] = driver
    options = DispatcherOptions.from_settings(settings, **opts)
    quiet_gc(full_every=DISPATCHER_FULL_GC_EVERY)  # as `hub dispatcher` does before it starts
    disp = Dispatcher(settings, driver.key, priority, cat, options)
    first: list[float] = []

    async def main() -> None:
        task = asyncio.create_task(disp.run())
        while disp.stats.finished < n:
            if (disp.stats.driver_calls or disp.stats.finished) and not first:
                first.append(time.perf_counter())
            await asyncio.sleep(0.002)
            if task.done():
                task.result()
        first.append(time.perf_counter())
        disp.stop()
        await task

    asyncio.run(main())
    return n / (first[-1] - first[0])


def run(n: int = 20_000, rounds: int = 5, hook_jobs: int = 5000) -> dict[str, Any]:
    """Every figure, on an embedded broker and database of its own.

    n jobs per no-op and passthrough round: at 10,000 jobs/s a run of 5,000 lasted half a
    second, and the first and last batches weighed on the rate as much as the rest.
    """
    out: dict[str, Any] = {"jobs": n, "rounds": rounds}
    with runtime.embedded_runtime() as rt:
        name = f"pimhub_bench_{uuid.uuid4().hex[:8]}"
        url = runtime.create_database(rt.database.url, name)
        db.migrate(url)
        settings = Settings(kafka_bootstrap=rt.broker.bootstrap, database_url=url)
        apply_topics(settings)
        cat = discover()
        cat.drivers["noop"] = NoopDriver
        upsert_integration(url, cat, Integration("bench-noop", "n", "noop", True, {}, None, {}))
        _produce(settings, topics.JOBS_NORMAL, _jobs("bench-noop", "noop", "normal", n))
        out["raw_passthrough_jobs_per_s"] = round(
            passthrough(settings, topics.JOBS_NORMAL, n, decode=False)
        )
        best_pass = best_noop = (0.0, 0.0)
        by_round, unguarded, pg_cpu = [], [], []
        for run_no in range(rounds):
            if run_no:
                # The dispatcher's group goes on from its committed offset: new jobs for it.
                jobs = _jobs("bench-noop", "noop", "normal", n, prefix=f"r{run_no}-")
                _produce(settings, topics.JOBS_NORMAL, jobs)
            one_pass = _timed(passthrough, settings, topics.JOBS_NORMAL, n)
            pg_before = _postgres_cpu()
            one_noop = _timed(dispatch, settings, NoopDriver, "normal", n)
            pg_cpu.append(_postgres_cpu() - pg_before)
            by_round.append(round(one_noop[0] / one_pass[0], 2))
            best_pass, best_noop = max(best_pass, one_pass), max(best_noop, one_noop)
            # Produced only now: the run above may have finished a few more than n jobs.
            _produce(
                settings,
                topics.JOBS_NORMAL,
                _jobs("bench-noop", "noop", "normal", n, prefix=f"u{run_no}-"),
            )
            with mock.patch.object(app, "GuardStore", NoDatabaseGuard):
                bare = dispatch(settings, NoopDriver, "normal", n)
            unguarded.append(round(bare / one_pass[0], 2))
        out["passthrough_jobs_per_s"] = round(best_pass[0])
        out["passthrough_cpu_us_per_job"] = round(best_pass[1] * 1e6 / n)
        out["noop_jobs_per_s"] = round(best_noop[0])
        out["noop_cpu_us_per_job"] = round(best_noop[1] * 1e6 / n)
        out["noop_vs_passthrough"] = statistics.median(by_round)
        out["noop_vs_passthrough_by_round"] = by_round
        out["noop_vs_passthrough_best"] = round(best_noop[0] / best_pass[0], 2)
        out["noop_vs_raw_passthrough"] = round(best_noop[0] / out["raw_passthrough_jobs_per_s"], 2)
        out["noop_postgres_cpu_us_per_job"] = round(statistics.median(pg_cpu) * 1e6 / n)
        out["noop_without_guard_vs_passthrough"] = statistics.median(unguarded)
        out["noop_without_guard_vs_passthrough_by_round"] = unguarded
        sink = FastSink()
        try:
            # Not on the no-op jobs' topic: these dispatchers would read them all (another
            # driver's, skipped) among their own. A later run on a topic goes on from the
            # earlier one's committed offsets. The slow target (20 ms an answer) shows what
            # the in-flight limit is for; the quick one what the dispatcher itself costs.
            runs = [(limit, 0, hook_jobs // 5) for limit in (1, 8, 32)]
            runs += [(1, 20, hook_jobs // 50), (8, 20, hook_jobs // 10), (32, 20, hook_jobs // 5)]
            for k, (limit, delay_ms, m) in enumerate(runs):
                prio = ("immediate", "low")[k % 2]
                integ = f"bench-hook-{limit}-{delay_ms}"
                hook = {"url": f"{sink.url}/{delay_ms}/{limit}"}
                upsert_integration(
                    url, cat, Integration(integ, integ, "webhook", True, hook, None, {})
                )
                _produce(settings, topics.job_topic(prio), _jobs(integ, "webhook", prio, m))
                rate, cpu = _timed(dispatch, settings, _hook_driver(), prio, m, max_in_flight=limit)
                name = (
                    f"webhook_{delay_ms}ms_inflight_{limit}"
                    if delay_ms
                    else f"webhook_inflight_{limit}"
                )
                out[f"{name}_jobs_per_s"] = round(rate)
                if not delay_ms:
                    out[f"{name}_cpu_us_per_job"] = round(cpu * 1e6 / m)
            out["sink_requests"] = sink.count()
        finally:
            sink.stop()
        runtime.drop_database(rt.database.url, name)
    return out


class FastSink:
    """A keep-alive HTTP/1.1 sink answering 200 to every POST, in a child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_dispatcher", "sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def count(self) -> int:
        """Requests answered so far."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        """Close its input: it exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class _SinkProtocol(asyncio.Protocol):
    """Parses pipelined HTTP/1.1 requests by Content-Length; answers 200 with keep-alive.

    POST /<ms>/... answers after <ms> milliseconds (a slow target).
    """

    served = 0
    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            # The first path segment is how many milliseconds to wait before answering.
            path = self.buf[: self.buf.find(b"\r\n")].split(b" ")[1]
            delay_ms = int(path.split(b"/")[1] or 0)
            self.buf = self.buf[end + 4 + length :]
            _SinkProtocol.served += 1
            if delay_ms:
                # One delay for all: the answers stay in the order of the requests.
                asyncio.get_running_loop().call_later(delay_ms / 1000, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(self.OK)


def serve_sink() -> None:
    """The child side of FastSink: print the port, serve until stdin closes."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_SinkProtocol, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "count":
                print(_SinkProtocol.served, flush=True)
        server.close()

    asyncio.run(main())


def _hook_driver() -> type[Driver]:
    from pim_hub.drivers.webhook.driver import WebhookDriver

    return WebhookDriver


if __name__ == "__main__":
    if sys.argv[1:2] == ["sink"]:
        serve_sink()
    else:
        threading.stack_size(0)
        print(json.dumps(run(*(int(a) for a in sys.argv[1:3])), indent=2))
