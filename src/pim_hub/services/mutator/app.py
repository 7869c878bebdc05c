"""The Faust mutator: snapshots → mutations (stateful diff) and mutations → jobs (fan-out)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, cast

import aiokafka
import faust
import orjson
from confluent_kafka import KafkaError, Message, Producer
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from pim_hub.registry.model import IntegrationTarget
from pim_hub.registry.store import load_targets_async
from pim_hub.runtime import health, metrics, tracing
from pim_hub.runtime.kafka import DeliveryFailed, Headers, faust_broker_options, make_producer
from pim_hub.runtime.logread import ephemeral_consumer, log_bounds
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import ordering, topics
from pim_hub.schemas.errors import SchemaError
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.core.fanout import previous_jobs
from pim_hub.services.mutator.faust_patches import ResumeSafeConsumer
from pim_hub.services.mutator.precedence import Kind, Precedence, Turn
from pim_hub.services.mutator.processing import (
    SnapshotProcessor,
    chain,
    encode_mutation,
    load_fanout,
    set_aside_record,
    summarise,
)
from pim_hub.services.mutator.settings import STATE_TABLE, MutatorSettings

logger = logging.getLogger(__name__)

# Faust's `kafka://` transport (aiokafka) is used on purpose: its `confluent://` transport hung at
# start-up on the embedded broker. aiokafka cannot use an idempotent producer there: Faust's own
# producer writes only the table changelog; mutations, invalid snapshots and jobs go through an
# idempotent confluent-kafka producer (BatchOutput). Reading is at-least-once: mutation ids are
# deterministic and downstream is idempotent.
BATCH_MAX = 500
BATCH_WITHIN_S = 0.05
#: Snapshots per batch of a bulk load (pim.snapshots.bulk). A live batch no longer waits for
#: the whole bulk batch running, only for its snapshot in hand and the acknowledgement of
#: what it has done (services/mutator/precedence.py, `bulk_in_parts`); the size still bounds
#: the table writes a batch queues at once (BULK_CHANGELOG_HIGH).
BULK_BATCH_MAX = 100
#: Records Faust hands on per call (every topic). Faust delivers them one after the other
#: on the event loop the agents share, a few loop turns each, and a bulk batch takes a turn
#: for each of its snapshots: during a load a call's 250 bulk records took about a second to
#: deliver, and a live snapshot fetched meanwhile waited for the next call (which hands live
#: records on first, `live_first`). 50 a call bounds that wait to a fifth.
POLL_RECORDS = 50
#: The bulk channel's buffer, at least (see bulk_buffer).
BULK_BUFFER = 1250
#: Table (changelog) writes the bulk agent lets queue before it waits: several bulk batches'
#: worth, each a state of a few KB.
BULK_CHANGELOG_HIGH = 6 * BULK_BATCH_MAX
#: Table writes Faust may hold before it stops delivering records of every topic (see
#: make_app). Past it Faust delivers nothing until it has sent that many again, seconds when
#: the broker is slow to acknowledge; the room above BULK_CHANGELOG_HIGH is the live agent's,
#: about 20 s of live changes at 60 a second while the broker answers nothing.
CHANGELOG_BUFFER = BULK_CHANGELOG_HIGH + 1400


def bulk_buffer(partitions: int) -> int:
    """The bulk channel's buffer for a bulk topic of `partitions` partitions.

    Faust stops fetching a partition once the channel holds maxsize/1.25 records (it pauses
    the partition at its next record delivered), but delivers the records in hand without
    waiting: up to POLL_RECORDS a call, and each further call pauses one more partition.
    maxsize - maxsize/1.25 >= partitions x POLL_RECORDS therefore keeps that delivery from
    ever finding the channel full, which would block Faust's delivery of live snapshots too.
    """
    return max(BULK_BUFFER, 5 * partitions * POLL_RECORDS)


#: Topics whose fetched records Faust hands on before any other's (see _transport_class).
LIVE_FIRST_TOPICS = frozenset({topics.SNAPSHOTS})
#: which agents a worker runs: both, or one of them in its own consumer group
Role = Literal["all", "mutate", "fanout"]
ROLES: tuple[Role, ...] = ("all", "mutate", "fanout")


class BatchOutput:
    """An agent's outputs through one idempotent confluent-kafka producer, acknowledged per batch.

    One C call queues a record (a Faust `send` costs a future, a callback and aiokafka's
    Python batching per record); the agent waits once per batch, before its offsets or its
    table move. Idempotence keeps the order per partition across retries, and the murmur2
    partitioner puts a key on the partition aiokafka (Java's partitioner) would.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: Producer | None = None
        self._failures: list[DeliveryFailed] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(DeliveryFailed(msg.topic() or "?", err))

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Queue one record; `acknowledged` waits for it."""
        if self._producer is None:
            self._producer = make_producer(self._settings)
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=headers, on_delivery=self._on_delivery
                )
                return
            except BufferError:
                # The local queue is full (batches are far smaller): serve deliveries, retry.
                self._producer.poll(0.1)

    async def acknowledged(self) -> None:
        """Return once every record queued so far is acknowledged; raise if one was refused."""
        producer = self._producer
        if producer is None:
            return
        # flush serves the delivery callbacks and releases the GIL: in a thread, the event
        # loop keeps heartbeats and fetches going meanwhile. A record the broker never takes
        # fails after librdkafka's message.timeout.ms, so this loop ends.
        while len(producer) > 0:
            await asyncio.to_thread(producer.flush, 1.0)
        if self._failures:
            failure = self._failures[0]
            self._failures.clear()
            raise failure


async def live_first(
    fetch: Callable[[set[TP] | None, float | None], Awaitable[Mapping[TP, Any]]],
    active: set[TP] | None,
    timeout: float | None,
) -> Mapping[TP, Any]:
    """Records already fetched for the live topics if there are any, else `fetch` as asked.

    `fetch(partitions, timeout)` hands on what the consumer has fetched for those partitions
    (aiokafka's `fetched_records`): partition by partition in the order they were fetched,
    up to a number of records a call. Live snapshots fetched after a bulk load's backlog
    thus waited until Faust had delivered the bulk records fetched before them.
    """
    if active:
        live = {tp for tp in active if tp.topic in LIVE_FIRST_TOPICS}
        if live and len(live) < len(active):
            records = await fetch(live, 0)
            if records:
                return records
    return await fetch(active, timeout)


def _die(agent: str) -> None:
    # A bug, not bad input (bad input is routed aside): exit without committing so the batch
    # is read again after a restart, instead of Faust restarting the agent past lost events.
    logger.critical(
        "mutator agent crashed; exiting without commit", extra={"agent": agent}, exc_info=True
    )
    logging.shutdown()
    os._exit(70)


def _true_ends(settings: Settings, tps: list[TP]) -> dict[TP, int]:
    consumer = ephemeral_consumer(settings, "mutator-recovery")
    try:
        bounds = log_bounds(consumer, [(tp.topic, tp.partition) for tp in tps], timeout_s=10.0)
    finally:
        consumer.close()
    return {tp: bounds[(tp.topic, tp.partition)][1] for tp in tps}


def _transport_class(settings: Settings) -> type[faust_aiokafka.Transport]:
    """Faust's aiokafka transport, with changelog ends read from the log instead of listed.

    Table recovery reads each changelog partition up to the end the broker lists. The embedded
    broker (Tansu) lists the base offset of the partition's last record batch plus one, so
    recovery stopped inside the last batch: its other records stayed in Faust's recovery
    buffer, unapplied, and were applied at the next rebalance over newer state (a table going
    back in time), and the offsets Faust had read looked beyond the listed end. The true end
    comes from a fetch (pim_hub.runtime.logread.log_bounds); on Apache Kafka it equals the listed end.
    """

    fetch_wait_ms = settings.kafka.fetch_wait_max_ms

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(
            self, transport: faust_aiokafka.Transport
        ) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            # Faust fixes aiokafka's fetch wait at 1500 ms; the embedded broker answers a
            # waiting fetch only when it runs out, so each hop through the mutator waited it
            # out. Read when the consumer starts its fetcher.
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

        async def _fetch_records(
            self,
            consumer: aiokafka.AIOKafkaConsumer,
            active_partitions: set[TP] | None,
            timeout: float | None = None,
            max_records: int | None = None,
        ) -> Mapping[TP, Any]:
            def fetch(tps: set[TP] | None, wait: float | None) -> Awaitable[Mapping[TP, Any]]:
                # None (Faust's getmany for a client-only app) reads as every partition.
                return faust_aiokafka.AIOKafkaConsumerThread._fetch_records(
                    self, consumer, cast("set[TP]", tps), timeout=wait, max_records=max_records
                )

            return await live_first(fetch, active_partitions, timeout)

    class Consumer(ResumeSafeConsumer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Offsets are committed by Faust's commit timer (broker_commit_interval) only.
            # Faust also commits inside its delivery loop once `broker_commit_every` (10,000)
            # records have been acknowledged, and a commit first flushes every table write
            # still queued: under a bulk load that took 4-21 s, during which no record of any
            # topic was delivered, so live snapshots waited seconds for the load's table writes.
            self._commit_every = None

        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
            listed = await super().highwaters(*partitions)
            try:
                return await asyncio.to_thread(_true_ends, settings, list(partitions))
            except Exception as exc:
                logger.warning(
                    "cannot read the changelog ends; using the listed ones",
                    extra={"error": str(exc)},
                )
                return listed

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


# RocksDB store sizes, per changelog partition a worker holds (each partition is its own
# database with its own block cache): with 6 partitions on one worker at most
# 6 x (4 MB cache + 2 x 4 MB write buffers) = 72 MB, whatever the catalogue's size; Faust's
# defaults (2 GB cache and 3 x 64 MB write buffers per partition) are sized for a server.
# Reads are mostly one per snapshot of keys spread evenly: a large cache would hit rarely.
ROCKSDB_OPTIONS: dict[str, int] = {
    "block_cache_size": 4 * 1024**2,
    "write_buffer_size": 4 * 1024**2,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 1024**2,
}
_MAX_WORKER_SLOTS = 64
# Table directory claimed by this process, per (data dir, app id), with its lock held open.
_claimed: dict[Path, tuple[Path, IO[bytes]]] = {}


def table_dir(mutator: MutatorSettings) -> Path:
    """A table directory under the data dir that no other running worker uses.

    RocksDB locks each partition's database: workers of one app sharing a data dir would
    wait for each other's locks and crash. Each worker claims the first free slot
    (an flock, released when the process ends, even by SIGKILL); a restarted worker takes a
    free slot back with its databases, and recovery reads only the changelog records after
    the offsets stored there. The app id is part of the path: another app's (or
    changelog's) databases are never read.
    """
    base = (Path(mutator.data_dir) / mutator.app_id).resolve()
    claimed = _claimed.get(base)
    if claimed is not None:
        return claimed[0]
    base.mkdir(parents=True, exist_ok=True)
    for slot in range(_MAX_WORKER_SLOTS):
        lock = (base / f"worker-{slot}.lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        path = base / f"worker-{slot}"
        _claimed[base] = (path, lock)
        return path
    raise RuntimeError(f"{_MAX_WORKER_SLOTS} mutator workers already use {base}")


def faust_config(
    settings: Settings, mutator: MutatorSettings, tables: bool = True
) -> dict[str, Any]:
    """The faust.App settings of the mutator (the benchmark's naive Faust baseline uses them too).

    `tables=False` (fan-out) keeps no table: memory store, and no table directory claimed.
    """
    rocksdb = tables and mutator.store == "rocksdb"
    return {
        **faust_broker_options(settings),
        # Faust checks the offset stored with a RocksDB table against the changelog's end: a
        # data dir from another cluster (or a reset broker) fails loudly instead of serving
        # stale state. The memory store stores no offset: the check would only cost.
        "recovery_consistency_check": rocksdb,
        # memory: every assigned partition is recovered from the start of its changelog (RSS
        # grows with the catalogue). rocksdb: state on disk, recovery from the offset stored
        # with it.
        "store": "rocksdb://" if rocksdb else "memory://",
        # A memory store recovers a newly assigned partition from the start of its changelog
        # whether or not it was a standby here: standbys only cost fetches and rebalance time.
        # With RocksDB a standby would save that replay, at the cost of a second copy on disk
        # and of fetches all the time: partitions move rarely.
        "table_standby_replicas": 0,
        "datadir": mutator.data_dir,
        **({"tabledir": str(table_dir(mutator))} if rocksdb else {}),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "broker_session_timeout": settings.kafka.session_timeout_ms / 1000,
        "broker_heartbeat_interval": max(0.5, settings.kafka.session_timeout_ms / 4000),
        "producer_acks": -1,
        "web_enabled": False,
        "table_cleanup_interval": 3600.0,
        # Events fetched ahead per agent: Faust's 4096 held ~150 MB of snapshots and
        # mutations (with their state) in a worker catching up; one batch ahead suffices.
        "stream_buffer_maxsize": BATCH_MAX,
        # Records unpacked per read of a fetched partition. Unbounded, a fetch's whole answer
        # became record objects at once: the embedded broker answers a fetch with all it has
        # (it ignores the per-partition byte limit), 100 MB of snapshots for a worker catching
        # up 15,000 products.
        "broker_max_poll_records": POLL_RECORDS,
    }


def table_options(mutator: MutatorSettings) -> dict[str, Any] | None:
    """Options of the store of the mutator's table (bounded RocksDB memory), or None."""
    return dict(ROCKSDB_OPTIONS) if mutator.store == "rocksdb" else None


#: mutation_id, entity_type, entity_key, operation: the fields fan-out reads of a creation
_MUTATION_HEAD = 4


def _fanout_view(serde: Serde, value: bytes | None) -> dict[str, Any]:
    """The mutation as fan-out needs it: a creation without its changes, anything else whole.

    A creation's priority is its entity type's (no change is read) and its job embeds the
    mutation's bytes as read, so its changes, every value of the new product and most of
    fan-out's work, are not decoded. Decoding them took half of a fan-out worker's CPU.
    """
    if serde.embeds_as_read("Job", "mutation", value, topic=topics.MUTATIONS):
        head = serde.decode_head("Mutation", value, _MUTATION_HEAD, topic=topics.MUTATIONS)
        if head is not None and head["operation"] == "create":
            return {**head, "changes": []}
    return serde.decode("Mutation", value, topic=topics.MUTATIONS)


def make_app(settings: Settings, mutator: MutatorSettings, role: Role = "all") -> faust.App:
    """Build the mutator app: the table and the mutate agent, the fan-out agent and its timer.

    `role` picks the agents. One worker of role `all` runs both, which suits a small
    catalogue. Under a full load, the mutate agent's queue of snapshots filled and blocked
    Faust's delivery of every record to both agents, so fan-out ran at about a third of the
    mutations' rate and the dispatchers waited; workers of roles `mutate` and `fanout` each
    read their own topic in their own group, in their own process.
    """
    app = faust.App(mutator.group(role), **faust_config(settings, mutator, tables=role != "fanout"))
    # Set before any topic is declared, so the consumer Faust creates is the patched one.
    app.transport = _transport_class(settings)(app.conf.broker_consumer, app)
    # Table writes queue in Faust's producer buffer; while it holds more than max_messages,
    # Faust stops delivering records of every topic until it has drained (100 by default:
    # one bulk batch's state). A live snapshot then waited for the bulk load's table writes.
    app.producer.buffer.max_messages = CHANGELOG_BUFFER
    serde = Serde(settings.registry_config())
    processor = SnapshotProcessor(
        serde, max_future_s=settings.version_max_future_s, ownership=settings.ownership()
    )
    budget = settings.record_budget
    fanout = load_fanout(settings, serde)
    targets: list[IntegrationTarget] = []

    def raw_topic(name: str) -> faust.TopicT:
        """A topic of bytes: the agents decode with the Serde themselves."""
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )

    snapshots = raw_topic(topics.SNAPSHOTS)
    # Snapshots of bulk loads: read only when no live snapshot waits (precedence.py). Its
    # own, larger buffer: when it fills, Faust stops fetching it, never the live topic.
    bulk_snapshots = raw_topic(topics.SNAPSHOTS_BULK)
    # Set on the topic, not passed to app.topic: Faust's app.topic drops its `maxsize`
    # argument. The agent's channel is a clone of the topic and keeps it.
    bulk_snapshots.maxsize = bulk_buffer(settings.topic_partitions)
    mutations = raw_topic(topics.MUTATIONS)
    mutating, fanning_out = role != "fanout", role != "mutate"
    # One producer per agent (live and bulk snapshots each have theirs): each waits for its
    # own records only, so a live batch never waits for the acknowledgements of a bulk part.
    mutate_out: dict[Kind, BatchOutput] | None = (
        {"live": BatchOutput(settings), "bulk": BatchOutput(settings)} if mutating else None
    )
    fanout_out = BatchOutput(settings) if fanning_out else None
    # Latest indexed state per entity key, co-partitioned with pim.snapshots.
    state: Any = (
        app.Table(
            STATE_TABLE,
            key_type=bytes,
            value_type=bytes,
            default=None,
            options=table_options(mutator),
        )
        if mutating
        else None
    )

    async def handle_snapshots(events: Sequence[Any], turn: Turn) -> int:
        """Process snapshots in order under `turn`; how many (all, unless it gave way).

        In a bulk turn the event loop runs between snapshots, so Faust keeps delivering live
        snapshots and the live agent can queue at the gate, and processing stops after the
        snapshot in hand once a live batch waits. The gate is released once everything is
        sent; the acknowledgements and table writes follow outside it (precedence.py).
        """
        out = mutate_out.get(turn.kind) if mutate_out is not None else None
        assert out is not None
        started = time.perf_counter()
        # Later snapshots of an entity in this batch see the state the earlier ones left.
        overlay: dict[str, dict[str, Any] | None] = {}

        # The state the processor last read, so that the mutation's chain is read from it
        # without decoding the stored state twice.
        last_read: list[Any] = [None, None]

        def stored_for(
            key: str, overlay: dict[str, dict[str, Any] | None] = overlay
        ) -> dict[str, Any] | None:
            if key in overlay:
                return overlay[key]
            if last_read[0] == key:
                return last_read[1]  # type: ignore[no-any-return]
            raw = state.get(key.encode())
            value = orjson.loads(raw) if raw else None
            last_read[0], last_read[1] = key, value
            return value

        outcomes = []
        counts: dict[tuple[str, str], int] = {}
        set_aside: dict[str, int] = {}
        for event in events:
            msg = event.message
            # A RocksDB table reads a key from the database of the current event's partition
            # (Faust leaves the batch's last event there): each event reads its own partition.
            _current_event.set(weakref.ref(event))
            outcome = processor.process(msg.key, msg.value, stored_for)
            if turn.in_flight_elsewhere(outcome.entity_key):
                # Another batch has sent a mutation of this entity and not yet written its
                # state: decide again on the state it writes, and send after its records.
                metrics.MUTATOR_IN_FLIGHT_WAITS.labels(turn.kind).inc()
                await turn.settled(outcome.entity_key)
                last_read[0] = last_read[1] = None
                outcome = processor.process(msg.key, msg.value, stored_for)
            # A mutation the broker would refuse (or fan-out could not wrap in a job) turns
            # the snapshot invalid: set aside, the entity keeps its previous state.
            outcome, encoded = encode_mutation(serde, outcome, msg.key, msg.value, budget)
            outcomes.append((event, outcome))
            label = (outcome.entity_type, outcome.kind)
            counts[label] = counts.get(label, 0) + 1
            if outcome.kind == "invalid":
                assert outcome.invalid is not None
                logger.warning(
                    "invalid snapshot set aside",
                    extra={
                        "entity_key": outcome.entity_key,
                        "entity_type": outcome.entity_type,
                        "topic": msg.topic,
                        "partition": msg.partition,
                        "offset": msg.offset,
                        "reason": outcome.invalid.reason,
                        "code": outcome.invalid.code,
                        "set_aside_to": topics.SNAPSHOTS_INVALID,
                    },
                )
                set_aside[outcome.invalid.code] = set_aside.get(outcome.invalid.code, 0) + 1
                out.send(
                    topics.SNAPSHOTS_INVALID,
                    *set_aside_record(outcome.invalid, settings.kafka.message_max_bytes),
                )
                continue
            chained = chain(outcome, stored_for)
            if outcome.new_state is not None:
                overlay[outcome.entity_key] = outcome.new_state
            if encoded is not None:
                # The mutation continues the snapshot's trace (`runtime.tracing`).
                with tracing.stage(
                    "mutator.mutate",
                    msg.headers,
                    {"entity_key": outcome.entity_key, "outcome": outcome.kind},
                ) as trace_headers:
                    if chained is not None:
                        trace_headers = [*(trace_headers or ()), chained]
                    out.send(
                        topics.MUTATIONS,
                        encoded,
                        outcome.entity_key.encode(),
                        headers=trace_headers or None,
                    )
            if turn.kind == "bulk":
                await asyncio.sleep(0)
                if turn.give_way():
                    break
        # The entities this batch writes stay in flight until it has: the next batch may
        # process meanwhile (precedence.py).
        turn.release(
            o.entity_key for _, o in outcomes if o.new_state is not None or o.mutation is not None
        )
        # The state moves only after the mutations are acknowledged: a crash in between
        # re-emits the same mutation (same id) rather than losing it.
        await out.acknowledged()
        for (entity_type, outcome_kind), count in counts.items():
            metrics.MUTATOR_SNAPSHOTS.labels(entity_type, outcome_kind).inc(count)
        for code, count in set_aside.items():
            metrics.RECORDS_SET_ASIDE.labels("mutator", code).inc(count)
        metrics.observe_mutations([o.mutation for _, o in outcomes if o.mutation])
        metrics.MUTATOR_BATCH_SECONDS.observe(time.perf_counter() - started)
        # One changelog record per entity and batch: the last state is the one recovery
        # needs, written under the event of that entity's last snapshot (its partition).
        last: dict[str, tuple[Any, dict[str, Any]]] = {}
        for event, outcome in outcomes:
            if outcome.new_state is not None:
                last[outcome.entity_key] = (event, outcome.new_state)
        for entity_key, (event, new_state) in last.items():
            _current_event.set(weakref.ref(event))
            state[entity_key.encode()] = orjson.dumps(new_state)
        _current_event.set(None)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "snapshots processed", extra={"counts": summarise([o for _, o in outcomes])}
            )
        return len(outcomes)

    gate = Precedence()

    async def mutate(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            try:
                metrics.observe_batch("live", len(events))
                async with gate.live() as turn:
                    await handle_snapshots(events, turn)
            except Exception:
                _die("mutate")

    changelog = app.producer.buffer

    async def mutate_bulk(stream: Any) -> None:
        async for events in stream.take_events(BULK_BATCH_MAX, within=BATCH_WITHIN_S):
            try:
                # A bulk batch waits while the table writes of earlier ones still queue: past
                # CHANGELOG_BUFFER Faust would stop delivering live snapshots too.
                while changelog.size > BULK_CHANGELOG_HIGH:
                    await asyncio.sleep(BATCH_WITHIN_S)
                metrics.observe_batch("bulk", len(events))
                yielded = gate.yielded
                await gate.bulk_in_parts(events, handle_snapshots)
                metrics.MUTATOR_BULK_YIELDS.inc(gate.yielded - yielded)
            except Exception:
                _die("mutate_bulk")

    if mutating:
        app.agent(snapshots)(mutate)
        app.agent(bulk_snapshots)(mutate_bulk)

    async def handle_mutations(events: list[Any]) -> None:
        assert fanout_out is not None
        if not loaded.is_set():
            await wait_for_integrations()
        for event in events:
            msg = event.message
            try:
                mutation = _fanout_view(serde, msg.value)
            except SchemaError as exc:
                logger.error(
                    "undecodable mutation skipped by fan-out",
                    extra={"partition": msg.partition, "offset": msg.offset, "error": str(exc)},
                )
                metrics.FANOUT_UNDECODABLE.inc()
                continue
            jobs = fanout.jobs_for(mutation, targets)
            # The jobs of the entity's previous mutation: each job names its own, so that a
            # dispatcher of another lane does not let it overtake that one (only for the
            # integrations that get a job: each id is a uuid5).
            before = {}
            if jobs:
                getting = {job["integration_id"] for _, _, job in jobs}
                before = previous_jobs(
                    ordering.prev_mutation(msg.headers),
                    (t for t in targets if t.integration_id in getting),
                )
            for priority, key, job in jobs:
                topic_name = topics.job_topic(priority)
                metrics.FANOUT_JOBS.labels(job["integration_id"], job["driver"], priority).inc()
                # The mutation's bytes go into the job as read: no second encoding of it.
                value = serde.encode_embedding("Job", job, "mutation", msg.value, topic=topic_name)
                # Each job continues the mutation's trace (`runtime.tracing`).
                with tracing.stage(
                    "mutator.fanout",
                    msg.headers,
                    {
                        "entity_key": key,
                        "job_id": job["job_id"],
                        "integration": job["integration_id"],
                    },
                ) as trace_headers:
                    prev = before.get(job["integration_id"])
                    if prev is not None:
                        trace_headers = [
                            *(trace_headers or ()),
                            (ordering.PREV_JOB, ordering.prev_job_value(*prev)),
                        ]
                    fanout_out.send(topic_name, value, key.encode(), headers=trace_headers or None)
        await fanout_out.acknowledged()

    async def fan_out(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            try:
                metrics.observe_batch("fanout", len(events))
                await handle_mutations(events)
            except Exception:
                _die("fan_out")

    if fanning_out:
        app.agent(mutations)(fan_out)

    # Faust starts tasks and timers only once the agents already receive records: fan-out
    # must not run before the integrations are loaded, or it commits mutations with no jobs.
    loaded = asyncio.Event()

    async def refresh() -> None:
        if not settings.database_url:
            if not loaded.is_set():
                logger.warning("HUB_DATABASE_URL is not set: fan-out has no integrations")
                loaded.set()
            return
        try:
            fresh = await load_targets_async(settings.database_url)
        except Exception as exc:
            logger.error("cannot load integrations", extra={"error": str(exc)})
            return
        targets[:] = fresh
        if not loaded.is_set():
            logger.info("integrations loaded", extra={"integrations": len(fresh)})
            loaded.set()

    async def wait_for_integrations() -> None:
        while not loaded.is_set():
            await refresh()
            if not loaded.is_set():
                await asyncio.sleep(1.0)

    async def load_integrations() -> None:
        await refresh()

    async def refresh_integrations() -> None:
        await refresh()

    if fanning_out:
        app.task(load_integrations)
        app.timer(interval=settings.integrations_refresh_s)(refresh_integrations)

    # Expose for tests and tools.
    app.hub_targets = targets  # type: ignore[attr-defined]
    app.hub_precedence = gate  # type: ignore[attr-defined]
    return app


def watch_health(app: faust.App) -> None:
    """/healthz watches the worker's event loop; /readyz waits for its first assignment."""

    # A Faust timer runs on the worker's event loop: it stops beating when the loop is
    # blocked. It starts once the worker has started (a long table recovery is not a stuck
    # loop); the probes' start-up allowance covers the time before.

    # Both run on the worker's event loop: no beat comes after the stop's forget.
    stopping = [False]

    lag = health.EVENT_LOOP_LAG.labels("event-loop")
    last: list[float] = []

    async def beat() -> None:
        if not stopping[0]:
            health.HEALTH.beat("event-loop", health.DEFAULT_ALLOWANCE_S)
        # Faust's timer sleeps TICK_S between beats: more than that is the loop's lag.
        now = time.monotonic()
        if last:
            lag.observe(max(now - last[0] - health.TICK_S, 0.0))
        last[:] = [now]

    async def assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", ())
        health.HEALTH.set("assigned", True, f"{len(assigned)} partition(s)")

    async def stopped(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # A stopped worker's loop leaves the process's health registry.
        stopping[0] = True
        health.HEALTH.forget("event-loop")

    app.timer(interval=health.TICK_S)(beat)
    app.on_partitions_assigned.connect(assigned)
    app.on_before_shutdown.connect(stopped)


def ensure_data_dir(mutator: MutatorSettings) -> Path:
    """Create the mutator's data directory with its parents; its path.

    Faust creates the directory without parents: the default `.hub/mutator` (and any nested
    path a deployment sets) would fail on a fresh checkout or an empty volume.
    """
    path = Path(mutator.data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(
    settings: Settings, mutator: MutatorSettings, role: Role = "all", loglevel: str = "warn"
) -> None:
    """Run a mutator worker of a role until it is stopped (SIGTERM/SIGINT)."""
    from faust import Worker

    service = "fanout" if role == "fanout" else "mutator"

    class HubWorker(Worker):
        """Faust's worker, logging through the hub's handler and saying when it is ready."""

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            logger.info(
                "service ready",
                extra={"service": service, "role": role, "group": app.conf.id},
            )

    ensure_data_dir(mutator)
    app = make_app(settings, mutator, role)
    logger.info(
        "service starting",
        extra={
            "service": service,
            "role": role,
            "group": app.conf.id,
            "store": mutator.store,
        },
    )
    metrics.start_from_env(service, kafka=settings.kafka_config(), group=app.conf.id)
    watch_health(app)
    # override_logging=False keeps the hub's handler (JSON by default, HUB_LOG_FORMAT): Faust
    # would replace it with its own coloured text handler. No spinner: it writes terminal
    # escape codes into the log.
    worker = HubWorker(app, loglevel=loglevel, quiet=True, override_logging=False)
    worker.spinner = None
    worker.execute_from_commandline()
