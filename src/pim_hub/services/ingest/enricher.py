"""Enricher: pim.raw-events → pim.snapshots, completing notify-only events from the REST API."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import psycopg
from confluent_kafka import Consumer, Message, TopicPartition

from pim_hub.runtime import metrics, tracing
from pim_hub.runtime.health import HEALTH, POLL_ALLOWANCE_S
from pim_hub.runtime.kafka import (
    AsyncProducer,
    DeliveryFailed,
    consume_ready,
    consumer_config,
    make_producer,
)
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.errors import InvalidSnapshot, SchemaError
from pim_hub.schemas.limits import LimitExceeded, check_depth
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.topics import RAW_EVENTS, SNAPSHOTS, SNAPSHOTS_INVALID
from pim_hub.services.ingest.akeneo import API, AkeneoClient, AkeneoError
from pim_hub.services.ingest.dedupe import ENRICHER_GROUP, HandledEvents, SeenIds
from pim_hub.services.ingest.events import (
    EVENT_PLATFORM,
    H_IGNORED,
    H_RECEIVED,
    H_SOURCE,
    InvalidEvent,
    Json,
    Plan,
    plan_raw,
)
from pim_hub.services.ingest.settings import IngestSettings
from pim_hub.services.ingest.snapshots import resource_snapshot

logger = logging.getLogger(__name__)
T = TypeVar("T")

GROUP_ID = ENRICHER_GROUP


@dataclass
class _Item:
    """One raw record of a batch and what it turned into."""

    msg: Message
    plan: Plan | None = None
    origin: str = "unknown"
    received_at: datetime | None = None


#: One record to write: (topic, key, value, headers).
Output = tuple[str, Any, bytes | None, Any]


class SetAside(Exception):
    """A raw record the enricher cannot turn into a snapshot: `code` is the short reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _headers(msg: Message) -> dict[str, str]:
    """The record's headers as text.

    Raises:
        SetAside: a header value is not UTF-8 (anyone may write to pim.raw-events).
    """
    out: dict[str, str] = {}
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
    for name, value in pairs:
        if value is not None:
            try:
                out[name] = value.decode() if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError as exc:
                raise SetAside("bad_header", f"header {name!r} is not UTF-8: {exc}") from exc
    return out


def _received_at(headers: dict[str, str], msg: Message) -> datetime:
    raw = headers.get(H_RECEIVED)
    if raw and raw.isdigit():
        return datetime.fromtimestamp(int(raw) / 1000, UTC)
    _, stamp = msg.timestamp()
    return datetime.fromtimestamp(stamp / 1000, UTC) if stamp > 0 else datetime.now(UTC)


def _fetch_path(plan: Plan) -> str:
    """REST path of the resource a notify-only event names."""
    lk = plan.lookup
    paths = {
        "product_model": f"{API}/product-models/{lk.get('code')}",
        "category": f"{API}/categories/{lk.get('code')}",
        "family": f"{API}/families/{lk.get('code')}",
        "family_variant": f"{API}/families/{lk.get('family')}/variants/{lk.get('code')}",
        "attribute": f"{API}/attributes/{lk.get('code')}",
        "attribute_option": f"{API}/attributes/{lk.get('attribute')}/options/{lk.get('code')}",
        "channel": f"{API}/channels/{lk.get('code')}",
        "locale": f"{API}/locales/{lk.get('code')}",
    }
    return paths[str(plan.entity_type)]


class Enricher:
    """Consumer group hub.ingest.enricher; offsets are committed only after the snapshots
    of a batch are acknowledged, so a crash re-reads (and re-publishes) at most one batch.

    Duplicates are recognised by event id: first in memory, then (with HUB_DATABASE_URL) in
    PostgreSQL, which survives restarts and is shared by the replicas. A batch's ids are
    claimed before its snapshots are built and committed once they are acknowledged, before
    the offsets: a crash in between rolls the claim back, so the re-read events are handled.
    """

    def __init__(
        self,
        settings: Settings,
        ingest: IngestSettings,
        client: AkeneoClient,
        *,
        group_id: str = GROUP_ID,
        topic: str = RAW_EVENTS,
        output_topic: str = SNAPSHOTS,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        prune_every_s: float = 3600.0,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.client = client
        self.group_id = group_id
        self.topic = topic
        self.output_topic = output_topic
        self.serde = Serde(settings.registry_config())
        self.own = ingest.own_authors()
        self.seen = SeenIds(ingest.dedupe_size)
        self.handled = (
            HandledEvents(settings.database_url, group_id) if settings.database_url else None
        )
        self.prune_every_s = prune_every_s
        self._next_prune = 0.0
        self.stats: Counter[str] = Counter()
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Finish the current batch, commit, and return from run()."""
        self._stop.set()

    async def _pause(self, attempt: int) -> None:
        delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(attempt, 16))
        delay *= 0.5 + random.random() / 2
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
        except TimeoutError:
            pass

    async def run(self) -> None:
        """Consume until stop() is called."""
        loop = asyncio.get_running_loop()
        consumer = Consumer(consumer_config(self.settings, self.group_id))
        producer = AsyncProducer(make_producer(self.settings))
        await producer.start()
        consumer.subscribe([self.topic], on_assign=_assigned)
        logger.info("enricher started", extra={"group": self.group_id, "topic": self.topic})
        if self.handled is None:
            logger.warning(
                "HUB_DATABASE_URL is not set: duplicates are recognised in memory only "
                "(not across restarts nor replicas)"
            )
        done: dict[tuple[str, int], int] = {}  # the position after each handled batch
        try:
            while not self._stop.is_set():
                HEALTH.beat("poll", POLL_ALLOWANCE_S)
                await self._maybe_prune()
                msgs = await loop.run_in_executor(
                    None, consume_ready, consumer, self.ingest.enrich_batch, 0.5
                )
                batch = []
                for msg in msgs:
                    if msg.error():
                        logger.warning("consume error", extra={"error": str(msg.error())})
                        continue
                    batch.append(msg)
                if not batch:
                    continue
                if not await self._handle(batch, producer):
                    break  # stopping before the batch was published: it is read again later
                offsets: dict[tuple[str, int], int] = {}
                for msg in batch:
                    tp = (str(msg.topic()), int(msg.partition() or 0))
                    offsets[tp] = max(offsets.get(tp, -1), int(msg.offset() or 0))
                commit = [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()]
                done.update({(t, p): o + 1 for (t, p), o in offsets.items()})
                # Not waited for: the snapshots are acknowledged and the claim recorded, so a
                # commit lost in a crash or a rebalance only re-reads events the claim table
                # knows. Waiting held the next batch (and the webhooks in it) for a round trip.
                try:
                    consumer.commit(offsets=commit, asynchronous=True)
                except Exception as exc:  # a rebalance: the new owner re-reads; harmless
                    logger.warning("commit failed", extra={"error": str(exc)})
        finally:
            await self._commit_last(consumer, done)
            if self.handled is not None:
                await self.handled.close()
            await producer.close()
            await loop.run_in_executor(None, consumer.close)
            HEALTH.forget("poll")  # stopped: no longer a loop of this process to watch
            logger.info("enricher stopped", extra=dict(self.stats))

    async def _commit_last(self, consumer: Consumer, done: dict[tuple[str, int], int]) -> None:
        """Commit, and wait for, the positions after the handled batches of the partitions
        this process still owns: a restart then reads none of them again."""
        loop = asyncio.get_running_loop()
        try:
            owned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            last = [TopicPartition(t, p, o) for (t, p), o in done.items() if (t, p) in owned]
            if last:
                await loop.run_in_executor(
                    None, functools.partial(consumer.commit, offsets=last, asynchronous=False)
                )
        except Exception as exc:  # the group moved on meanwhile: the new owner re-reads
            logger.warning("final commit failed", extra={"error": str(exc)})

    async def _handle(self, batch: list[Message], producer: AsyncProducer) -> bool:
        """Turn a batch into snapshots and publish them; False if stopped before the end."""
        planned, invalid = self._plan(batch)
        items = await self._claim(planned)
        if items is None:
            return False
        try:
            fetched = await self._fetch_all(items)
            if fetched is None:
                return False
            outputs = invalid + self._build(items, fetched)
            attempt = 0
            while True:
                futures = [producer.send_nowait(t, v, k, h) for t, k, v, h in outputs]
                try:
                    await asyncio.gather(*futures)
                    break
                except (DeliveryFailed, BufferError) as exc:
                    # Idempotent downstream: re-sending the whole batch can only duplicate.
                    logger.warning("snapshot write failed; retrying", extra={"error": str(exc)})
                    attempt += 1
                    await self._pause(attempt)
                    if self._stop.is_set():
                        return False
            ids = [item.plan.event_id for item in items if item.plan is not None]
            if not await self._record(ids):
                return False
        finally:
            if self.handled is not None:
                await self.handled.release()  # nothing once recorded; else handled again later
        for event_id in ids:
            self.seen.add(event_id)
        return True

    async def _claim(self, items: list[_Item]) -> list[_Item] | None:
        """The items whose event id no replica handled before (None: stopped while the
        database was unavailable)."""
        if self.handled is None or not items:
            return items
        handled = self.handled
        ids = [item.plan.event_id for item in items if item.plan is not None]
        new = await self._until_answered("batch", lambda: handled.claim(ids))
        if new is None:
            return None
        kept: list[_Item] = []
        for item in items:
            assert item.plan is not None
            if item.plan.event_id in new:
                kept.append(item)
            else:
                self.stats["duplicate"] += 1
                self.seen.add(item.plan.event_id)
        return kept

    async def _record(self, ids: list[str]) -> bool:
        """Commit the batch's claim (its snapshots are acknowledged); False if stopped first."""
        if self.handled is None:
            return True
        try:
            await self.handled.confirm()
            return True
        except psycopg.Error as exc:
            logger.warning("dedupe commit failed; recording again", extra={"error": str(exc)})
        handled = self.handled

        async def record() -> bool:
            await handled.record(ids)
            return True

        # None (stopped first): offsets stay uncommitted and the batch is read and published
        # again (at least once).
        return await self._until_answered("recording", record) is not None

    async def _until_answered(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """call() until the dedupe database answers; None if stopped first.

        Never guessed: meanwhile the batch waits, its offsets uncommitted.
        """
        attempt = 0
        while True:
            try:
                return await call()
            except psycopg.Error as exc:
                attempt += 1
                logger.warning(
                    f"dedupe database unavailable; {what} retried",
                    extra={"attempt": attempt, "error": str(exc)},
                )
                await self._pause(attempt)
                if self._stop.is_set():
                    return None

    async def _maybe_prune(self) -> None:
        """Forget handled ids older than the retention period, at most every prune_every_s."""
        if self.handled is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_every_s
        try:
            pruned = await self.handled.prune(self.ingest.dedupe_retention_s)
        except psycopg.Error as exc:
            logger.warning("pruning handled event ids failed", extra={"error": str(exc)})
            return
        self.stats["pruned"] += pruned
        if pruned:
            logger.info("handled event ids pruned", extra={"rows": pruned})

    def _set_aside(self, msg: Message, code: str, reason: str) -> Output:
        """The invalid-topic record for a raw record set aside (counted and logged)."""
        self.stats["invalid"] += 1
        metrics.RECORDS_SET_ASIDE.labels("enricher", code).inc()
        logger.error(
            "raw event set aside",
            extra={
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "reason": reason,
                "code": code,
            },
        )
        headers: list[tuple[str, str | bytes | None]] = [
            ("error.type", "InvalidEvent"),
            ("error.reason", code),
            ("error.message", reason.encode(errors="backslashreplace")[:4000]),
            ("source.topic", msg.topic()),
            ("source.offset", f"{msg.partition()}:{msg.offset()}"),
        ]
        value = msg.value()
        # The raw record came from the broker; with the headers around it, one at the limit
        # would not fit again: it is then kept without its value (the headers say why).
        if value is not None and len(value) + 8192 > self.settings.kafka.message_max_bytes:
            headers.append(("error.value_dropped", f"{len(value)} bytes"))
            value = None
        return (SNAPSHOTS_INVALID, msg.key(), value, headers)

    def _plan(self, batch: list[Message]) -> tuple[list[_Item], list[Output]]:
        items: list[_Item] = []
        invalid: list[Output] = []
        in_batch: set[str] = set()
        for msg in batch:
            try:
                headers = _headers(msg)
                if H_IGNORED in headers:
                    self.stats["ignored"] += 1
                    continue
                event = orjson.loads(msg.value() or b"")
                # What the mutator could not write back (orjson writes 254 levels) is set
                # aside here, with the record that carried it.
                check_depth("event", event)
                plan = plan_raw(headers.get(H_SOURCE), event, self.own)
            except SetAside as exc:
                invalid.append(self._set_aside(msg, exc.code, str(exc)))
                continue
            except orjson.JSONDecodeError as exc:
                invalid.append(self._set_aside(msg, "bad_json", f"not JSON: {exc}"))
                continue
            except LimitExceeded as exc:
                invalid.append(self._set_aside(msg, exc.code, str(exc)))
                continue
            except InvalidEvent as exc:
                invalid.append(self._set_aside(msg, "invalid_event", str(exc)))
                continue
            if plan.action == "ignore":
                self.stats["ignored"] += 1
                continue
            if plan.event_id in self.seen or plan.event_id in in_batch:
                self.stats["duplicate"] += 1
                continue
            in_batch.add(plan.event_id)
            kind = headers.get(H_SOURCE) or (
                EVENT_PLATFORM if isinstance(event, dict) and "specversion" in event else ""
            )
            origin = "event_platform" if kind == EVENT_PLATFORM else "webhook"
            items.append(_Item(msg, plan, origin, _received_at(headers, msg)))
        return items, invalid

    async def _fetch_all(self, items: list[_Item]) -> dict[str, Json | None] | None:
        """Resources of the notify-only events, by entity key (None: gone). Retries forever."""
        wanted = [i.plan for i in items if i.plan is not None and i.plan.action == "fetch"]
        if not wanted:
            return {}
        attempt = 0
        while not self._stop.is_set():
            try:
                return await self._fetch(wanted)
            except AkeneoError as exc:
                attempt += 1
                self.stats["akeneo_retries"] += 1
                # Never dropped: the batch waits (uncommitted) until Akeneo answers.
                logger.warning(
                    "akeneo unavailable; batch retried",
                    extra={"attempt": attempt, "error": str(exc)},
                )
                await self._pause(attempt)
        return None

    async def _fetch(self, plans: list[Plan]) -> dict[str, Json | None]:
        out: dict[str, Json | None] = {}
        uuids = [p.lookup["uuid"] for p in plans if p.entity_type == "product"]
        if uuids:
            found = await self.client.products_by_uuid(uuids)
            for u in uuids:
                out[f"product:{u}"] = found.get(u)
        others = {str(p.entity_key): p for p in plans if p.entity_type != "product"}

        async def one(key: str, plan: Plan) -> None:
            resource = await self.client.get(_fetch_path(plan))
            if resource is not None and plan.entity_type == "family_variant":
                resource = {**resource, "family": plan.lookup["family"]}
            out[key] = resource

        await asyncio.gather(*(one(k, p) for k, p in others.items()))
        return out

    def _build(self, items: list[_Item], fetched: dict[str, Json | None]) -> list[Output]:
        outputs: list[Output] = []
        budget = self.settings.record_budget
        for item in items:
            try:
                key, value = self._snapshot(item, fetched)
            except (InvalidSnapshot, LimitExceeded) as exc:
                code = exc.code if isinstance(exc, LimitExceeded) else "invalid_snapshot"
                outputs.append(self._set_aside(item.msg, code, str(exc)))
                continue
            except (SchemaError, orjson.JSONEncodeError) as exc:
                outputs.append(self._set_aside(item.msg, "unencodable", str(exc)))
                continue
            if len(value) + len(key or "") > budget:
                reason = (
                    f"its snapshot is {len(value)} bytes; records above {budget} bytes cannot "
                    "be written (HUB_KAFKA__MESSAGE_MAX_BYTES less room for later stages)"
                )
                outputs.append(self._set_aside(item.msg, "too_large", reason))
                continue
            # The snapshot continues the raw event's trace (`runtime.tracing`).
            plan = item.plan
            with tracing.stage(
                "ingest.enrich",
                item.msg.headers(),
                {
                    "event_id": plan.event_id if plan else None,
                    "entity_key": key,
                    "action": plan.action if plan else None,
                },
            ) as trace_headers:
                outputs.append((self.output_topic, key, value, trace_headers or None))
        return outputs

    def _snapshot(self, item: _Item, fetched: dict[str, Json | None]) -> tuple[str, bytes]:
        """(key, encoded Snapshot) of one planned event.

        Raises:
            InvalidSnapshot, LimitExceeded: the resource cannot be a snapshot.
            SchemaError, orjson.JSONEncodeError: it cannot be encoded.
        """
        plan = item.plan
        assert plan is not None and plan.entity_type is not None and plan.entity_key
        common: dict[str, Any] = {
            "event_id": plan.event_id,
            "received_at": item.received_at,
            "correlation_id": plan.event_id,
        }
        resource = plan.payload if plan.action == "snapshot" else None
        if plan.action == "fetch":
            resource = fetched.get(plan.entity_key)
            if resource is None:
                self.stats["gone"] += 1  # deleted since the event: a tombstone
        key = plan.entity_key
        if resource is not None:
            # A resource read from the REST API passes the same limits as an event.
            check_depth("resource", resource)
            key, record = resource_snapshot(plan.entity_type, resource, item.origin, **common)
            self.stats["snapshot"] += 1
        elif plan.action == "delta":
            record = snapshot_record(
                plan.entity_type,
                key,
                None,
                plan.version,
                item.origin,
                delta=[plan.delta],
                **common,
            )
            self.stats["delta"] += 1
        else:
            record = snapshot_record(
                plan.entity_type, key, None, plan.version, item.origin, **common
            )
            self.stats["tombstone"] += 1
        return key, self.serde.encode("Snapshot", record, topic=self.output_topic)


def _assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    """Ready once the group has given this process an assignment (even an empty one)."""
    HEALTH.set("assigned", True, f"{len(partitions)} partition(s)")
