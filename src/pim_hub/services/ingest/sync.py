"""REST sync from Akeneo (full or delta by `updated`) into pim.snapshots, resumable per page."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

import orjson
import psycopg

from pim_hub.runtime import metrics, tracing
from pim_hub.runtime.kafka import AsyncProducer
from pim_hub.schemas.errors import InvalidSnapshot, SchemaError
from pim_hub.schemas.limits import (
    DEFAULT_MESSAGE_MAX_BYTES,
    LimitExceeded,
    check_depth,
)
from pim_hub.schemas.limits import record_budget as budget_of
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.topics import SNAPSHOTS_BULK, SNAPSHOTS_INVALID
from pim_hub.services.ingest.akeneo import API, AkeneoClient, AkeneoHTTPError
from pim_hub.services.ingest.events import Json
from pim_hub.services.ingest.snapshots import resource_snapshot

logger = logging.getLogger(__name__)

Mode = Literal["full", "delta"]
#: sync order: structure first, so products arrive after the attributes they use
ENTITY_TYPES: tuple[str, ...] = (
    "channel",
    "locale",
    "attribute",
    "attribute_option",
    "family",
    "family_variant",
    "category",
    "product_model",
    "product",
)
#: types Akeneo filters by `updated` on the server (search_after lists)
_SERVER_DELTA = {"product": f"{API}/products-uuid", "product_model": f"{API}/product-models"}
_SIMPLE_LISTS = {
    "channel": f"{API}/channels",
    "locale": f"{API}/locales",
    "attribute": f"{API}/attributes",
    "family": f"{API}/families",
    "category": f"{API}/categories",
}
#: types read as several parallel `updated` ranges (their list endpoint can count)
_SPLITTABLE = {"product"}
_OPTION_TYPES = ("pim_catalog_simpleselect", "pim_catalog_multiselect")
_AKENEO_TIME = "%Y-%m-%d %H:%M:%S"
#: range checkpoints are named `<entity_type>#<n>`; the run's own cursor says `ranges:<count>`
RANGE_SEP = "#"
SPLIT_MARK = "ranges:"
#: where the search for range boundaries starts when there is no watermark (nothing in
#: Akeneo is older; an older item would still be read, by the first range)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

Page = tuple[list[Json], str | None]


@dataclass(frozen=True)
class Checkpoint:
    """A run under way for one entity type (a crash leaves it behind to resume from)."""

    mode: str
    since: datetime | None
    run_started_at: datetime
    cursor: str | None
    items: int


class WatermarkStore:
    """`sync_watermarks` (where the next delta starts) and `sync_checkpoints` (resume points)."""

    def __init__(self, database_url: str, source: str) -> None:
        self.source = source
        self._conn = psycopg.connect(database_url, autocommit=True)
        # Streams advance from worker threads: one transaction at a time on the connection.
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def watermark(self, entity_type: str) -> datetime | None:
        """When the last completed run of this type started."""
        row = self._conn.execute(
            "SELECT watermark FROM sync_watermarks WHERE source = %s AND entity_type = %s",
            (self.source, entity_type),
        ).fetchone()
        return row[0] if row else None

    def checkpoint(self, entity_type: str) -> Checkpoint | None:
        """The unfinished run of this type, if any."""
        row = self._conn.execute(
            "SELECT mode, since, run_started_at, cursor, items FROM sync_checkpoints "
            "WHERE source = %s AND entity_type = %s",
            (self.source, entity_type),
        ).fetchone()
        return Checkpoint(*row) if row else None

    def ranges(self, entity_type: str) -> dict[str, tuple[str | None, int]]:
        """The unfinished ranges of a split run: name -> (next page, items acknowledged)."""
        rows = self._conn.execute(
            "SELECT entity_type, cursor, items FROM sync_checkpoints "
            "WHERE source = %s AND left(entity_type, %s) = %s",
            (self.source, len(entity_type) + 1, f"{entity_type}{RANGE_SEP}"),
        ).fetchall()
        return {name: (cursor, items) for name, cursor, items in rows}

    def begin(self, entity_type: str, mode: str, since: datetime | None, started: datetime) -> None:
        """Record a new run (replacing an abandoned one and its ranges)."""
        with self._conn.transaction():
            self._drop_ranges(entity_type)
            self._conn.execute(
                "INSERT INTO sync_checkpoints (source, entity_type, mode, since, run_started_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (source, entity_type) DO UPDATE SET "
                "mode = EXCLUDED.mode, since = EXCLUDED.since, "
                "run_started_at = EXCLUDED.run_started_at, cursor = NULL, items = 0, "
                "updated_at = now()",
                (self.source, entity_type, mode, since, started),
            )

    def split(self, entity_type: str, first_pages: Sequence[str]) -> list[str]:
        """Turn a run that has read nothing yet into ranges, each with its own resume point.

        The run's own cursor becomes a marker, so a resumed run knows that a range without
        a row is finished (not unstarted). Returns the range names.
        """
        names = [f"{entity_type}{RANGE_SEP}{i}" for i in range(len(first_pages))]
        with self._lock, self._conn.transaction():
            self._drop_ranges(entity_type)
            for name, first in zip(names, first_pages, strict=True):
                self._conn.execute(
                    "INSERT INTO sync_checkpoints "
                    "(source, entity_type, mode, since, run_started_at, cursor) "
                    "SELECT source, %s, mode, since, run_started_at, %s FROM sync_checkpoints "
                    "WHERE source = %s AND entity_type = %s",
                    (name, first, self.source, entity_type),
                )
            self._conn.execute(
                "UPDATE sync_checkpoints SET cursor = %s, updated_at = now() "
                "WHERE source = %s AND entity_type = %s",
                (f"{SPLIT_MARK}{len(names)}", self.source, entity_type),
            )
        return names

    def _drop_ranges(self, entity_type: str) -> None:
        self._conn.execute(
            "DELETE FROM sync_checkpoints WHERE source = %s AND left(entity_type, %s) = %s",
            (self.source, len(entity_type) + 1, f"{entity_type}{RANGE_SEP}"),
        )

    def advance(
        self, entity_type: str, cursor: str | None, items: int, range_name: str | None = None
    ) -> None:
        """A page is acknowledged: the run (or one of its ranges) resumes after it.

        A range whose last page is acknowledged (cursor None) is dropped: it is finished.
        """
        with self._lock:
            self._advance(entity_type, cursor, items, range_name)

    def _advance(
        self, entity_type: str, cursor: str | None, items: int, range_name: str | None
    ) -> None:
        if range_name is None:
            self._conn.execute(
                "UPDATE sync_checkpoints SET cursor = %s, items = items + %s, updated_at = now() "
                "WHERE source = %s AND entity_type = %s",
                (cursor, items, self.source, entity_type),
            )
            return
        with self._conn.transaction():
            if cursor is None:
                self._conn.execute(
                    "DELETE FROM sync_checkpoints WHERE source = %s AND entity_type = %s",
                    (self.source, range_name),
                )
            else:
                self._conn.execute(
                    "UPDATE sync_checkpoints SET cursor = %s, items = items + %s, "
                    "updated_at = now() WHERE source = %s AND entity_type = %s",
                    (cursor, items, self.source, range_name),
                )
            self._conn.execute(
                "UPDATE sync_checkpoints SET items = items + %s, updated_at = now() "
                "WHERE source = %s AND entity_type = %s",
                (items, self.source, entity_type),
            )

    def complete(self, entity_type: str, started: datetime) -> None:
        """Every page is acknowledged: move the watermark and drop the checkpoint, atomically."""
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO sync_watermarks (source, entity_type, watermark) VALUES (%s, %s, %s) "
                "ON CONFLICT (source, entity_type) DO UPDATE SET watermark = EXCLUDED.watermark, "
                "updated_at = now()",
                (self.source, entity_type, started),
            )
            self._conn.execute(
                "DELETE FROM sync_checkpoints WHERE source = %s AND entity_type = %s",
                (self.source, entity_type),
            )
            self._drop_ranges(entity_type)


class Progress(Protocol):
    """Where the runner reports progress."""

    def begin(self, entity_type: str, resumed_items: int) -> None: ...

    def advance(self, entity_type: str, items: int) -> None: ...

    def end(self, entity_type: str) -> None: ...

    def close(self) -> None: ...


class LogProgress:
    """Plain log lines (not a terminal): one every `every_s` seconds and one per type."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._counts: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._last = 0.0

    def begin(self, entity_type: str, resumed_items: int) -> None:
        self._counts[entity_type] = resumed_items
        self._started[entity_type] = time.monotonic()
        self._last = time.monotonic()
        logger.info(
            "sync started", extra={"entity_type": entity_type, "resumed_items": resumed_items}
        )

    def _line(self, entity_type: str, message: str) -> None:
        elapsed = max(time.monotonic() - self._started[entity_type], 1e-6)
        logger.info(
            message,
            extra={
                "entity_type": entity_type,
                "items": self._counts[entity_type],
                "rate_per_s": round(self._counts[entity_type] / elapsed, 1),
            },
        )

    def advance(self, entity_type: str, items: int) -> None:
        self._counts[entity_type] += items
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self._line(entity_type, "sync progress")

    def end(self, entity_type: str) -> None:
        self._line(entity_type, "sync done")

    def close(self) -> None:
        pass


class RichProgress:
    """A progress bar per entity type with counts and rate, on stderr (stdout has the report).

    Like `hub replay`'s bar, it is gone when the run ends: the report says what was done.
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            Progress as Bar,
        )
        from rich.progress import (
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        from pim_hub.runtime.logs import to_current_stderr

        self._bar = Bar(
            SpinnerColumn(),
            TextColumn("{task.description:16}"),
            TextColumn("{task.completed:>9,.0f} items"),
            TextColumn("{task.fields[rate]:>8.0f}/s"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._bar.start()
        # Log lines print above the bar, not into it.
        self._logs = to_current_stderr()
        self._logs.__enter__()

    def begin(self, entity_type: str, resumed_items: int) -> None:
        self._started[entity_type] = time.monotonic()
        self._tasks[entity_type] = self._bar.add_task(
            entity_type, total=None, completed=resumed_items, rate=0.0
        )

    def advance(self, entity_type: str, items: int) -> None:
        task = self._tasks[entity_type]
        done = self._bar.tasks[task].completed + items
        rate = done / max(time.monotonic() - self._started[entity_type], 1e-6)
        self._bar.update(task, completed=done, rate=rate)

    def end(self, entity_type: str) -> None:
        task = self._tasks[entity_type]
        self._bar.update(task, total=self._bar.tasks[task].completed)

    def close(self) -> None:
        self._logs.__exit__(None, None, None)
        self._bar.stop()


def default_progress(enabled: bool = True) -> Progress:
    """A bar on a terminal, log lines otherwise; without progress (`--no-progress`) neither
    bar nor periodic lines: only each type's `sync started` and `sync done` log lines."""
    if not enabled:
        return LogProgress(every_s=math.inf)
    return RichProgress() if sys.stderr.isatty() else LogProgress()


@dataclass
class TypeReport:
    """What one entity type's run did."""

    entity_type: str
    mode: str
    published: int = 0
    invalid: int = 0
    pages: int = 0
    resumed: bool = False
    seconds: float = 0.0


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # read, so asyncio does not log it as never retrieved


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime(_AKENEO_TIME)


async def _prefetch(pages: AsyncIterator[Page], depth: int = 2) -> AsyncIterator[Page]:
    """Read the next pages while the current one is published (bounded: memory stays flat)."""
    queue: asyncio.Queue[Page | BaseException | None] = asyncio.Queue(depth)

    async def fill() -> None:
        try:
            async for page in pages:
                await queue.put(page)
            await queue.put(None)
        except BaseException as exc:  # handed to the reader, which re-raises it
            await queue.put(exc)

    task = asyncio.create_task(fill())
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()


class SyncRunner:
    """Reads Akeneo page by page and publishes every entity as a snapshot.

    Per page: publish every snapshot; once the broker acknowledged all of them (and those of
    every earlier page of the same stream), store the next page as the resume point. Up to
    `window` pages per stream wait for their acknowledgements at once, so reading and
    encoding go on while the broker answers. Products are read as `streams` parallel ranges
    of `updated` (each with its own resume point), so Akeneo serves one range while the hub
    encodes another instead of the two taking turns on a single cursor.

    Snapshots go to pim.snapshots.bulk by default: the mutator reads that topic only when no
    live snapshot (pim.snapshots) waits, so a load does not delay live changes; an entity's
    live and bulk snapshots meet in the mutator's version check (the older one is stale).

    When a type completes, its watermark becomes the time the run started (`updated` filters
    are evaluated by Akeneo and pages are ordered by uuid, not by `updated`, so no earlier
    point is safe; an item edited during the run may move between ranges and be missed by
    both, and it is then newer than the watermark, so the next delta reads it).
    """

    def __init__(
        self,
        client: AkeneoClient,
        producer: AsyncProducer,
        serde: Serde,
        store: WatermarkStore,
        *,
        page_size: int = 100,
        overlap_s: float = 2.0,
        progress: Progress | None = None,
        now: Any = None,
        topic: str = SNAPSHOTS_BULK,
        streams: int = 1,
        window: int = 1,
        record_budget: int = budget_of(DEFAULT_MESSAGE_MAX_BYTES),
    ) -> None:
        self.record_budget = record_budget
        self.topic = topic
        self.client = client
        self.producer = producer
        self.serde = serde
        self.store = store
        self.page_size = page_size
        self.overlap = timedelta(seconds=overlap_s)
        self.progress = progress or LogProgress()
        self._now = now or (lambda: datetime.now(UTC))
        self.streams = max(1, streams)
        self.window = max(1, window)

    async def run(self, mode: Mode, entity_types: Sequence[str] = ENTITY_TYPES) -> list[TypeReport]:
        """Sync the given types in dependency order; raises on the first type that fails."""
        unknown = set(entity_types) - set(ENTITY_TYPES)
        if unknown:
            raise ValueError(
                f"unknown entity type(s) {sorted(unknown)}; known: {', '.join(ENTITY_TYPES)}"
            )
        reports = []
        try:
            for entity_type in ENTITY_TYPES:
                if entity_type in entity_types:
                    reports.append(await self.sync_type(entity_type, mode))
        finally:
            self.progress.close()
        return reports

    async def sync_type(self, entity_type: str, mode: Mode) -> TypeReport:
        """One entity type: resume its unfinished run of the same mode, or start one."""
        started_clock = time.monotonic()
        report = TypeReport(entity_type, mode)
        checkpoint = self.store.checkpoint(entity_type)
        if checkpoint is not None and checkpoint.mode == mode:
            since, started, cursor = checkpoint.since, checkpoint.run_started_at, checkpoint.cursor
            report.resumed = True
            resumed_items = checkpoint.items
            logger.info(
                "sync resumed", extra={"entity_type": entity_type, "items": checkpoint.items}
            )
        else:
            started = self._now()
            since = None
            if mode == "delta":
                mark = self.store.watermark(entity_type)
                since = mark - self.overlap if mark is not None else None
            cursor = None
            resumed_items = 0
            self.store.begin(entity_type, mode, since, started)
        self.progress.begin(entity_type, resumed_items)
        ranges: dict[str, str | None] = {}
        if cursor is not None and cursor.startswith(SPLIT_MARK):
            ranges = {name: c for name, (c, _) in self.store.ranges(entity_type).items()}
        elif cursor is None and entity_type in _SPLITTABLE and self.streams > 1:
            try:
                firsts = await self._split(entity_type, since, started)
            except AkeneoHTTPError as exc:
                # A PIM that cannot count (an older version, a proxy) is read in one stream.
                logger.warning("sync not split: counting failed", extra={"error": str(exc)})
                firsts = []
            if firsts:
                names = await asyncio.to_thread(self.store.split, entity_type, firsts)
                ranges = dict(zip(names, firsts, strict=True))
        if ranges or (cursor is not None and cursor.startswith(SPLIT_MARK)):
            try:
                async with asyncio.TaskGroup() as group:
                    for name, first in ranges.items():
                        if first is not None:
                            group.create_task(
                                self._stream(entity_type, self.client.pages(first), report, name)
                            )
            except BaseExceptionGroup as failed:
                # The other ranges were cancelled; callers expect the error itself.
                raise failed.exceptions[0] from None
        else:
            await self._stream(entity_type, self._pages(entity_type, since, cursor), report)
        self.store.complete(entity_type, started)
        self.progress.end(entity_type)
        report.seconds = time.monotonic() - started_clock
        return report

    async def _stream(
        self,
        entity_type: str,
        pages: AsyncIterator[Page],
        report: TypeReport,
        range_name: str | None = None,
    ) -> None:
        """Publish a stream of pages; checkpoint each page, in order, once acknowledged."""
        waiting: deque[tuple[asyncio.Future[Any], str | None, int, int]] = deque()

        async def settle() -> None:
            acks, next_cursor, published, invalid = waiting.popleft()
            await acks
            report.published += published
            report.invalid += invalid
            report.pages += 1
            metrics.SYNC_ITEMS.labels(entity_type).inc(published)
            metrics.SYNC_INVALID.labels(entity_type).inc(invalid)
            # Only now is every snapshot of this page (and of the pages before it)
            # acknowledged: move the resume point.
            await asyncio.to_thread(
                self.store.advance, entity_type, next_cursor, published + invalid, range_name
            )
            self.progress.advance(entity_type, published + invalid)

        try:
            # Parallel streams already overlap reading with publishing: one page read ahead
            # each is enough, and keeps memory flat (a parsed page is several MB).
            depth = 2 if self.streams == 1 else 1
            async for items, next_cursor in _prefetch(pages, depth):
                acks, published, invalid = self._publish(entity_type, items)
                waiting.append((acks, next_cursor, published, invalid))
                # Fewer than `window` pages wait for acknowledgements while the next is read
                # (1: none), so a crash publishes at most `window - 1` pages again.
                while waiting and (len(waiting) >= self.window or waiting[0][0].done()):
                    await settle()
            while waiting:
                await settle()
        finally:
            for acks, *_ in waiting:
                # Not recorded, so published again on resume; nobody waits for them now.
                acks.cancel()
                acks.add_done_callback(_retrieved)

    def _publish(self, entity_type: str, items: list[Json]) -> tuple[asyncio.Future[Any], int, int]:
        """Queue a page's snapshots; the future resolves when all of them are acknowledged."""
        futures = []
        invalid = 0
        received = datetime.now(UTC)  # one clock read per page: they arrived together
        for item in items:
            try:
                # Nested beyond what later stages write back: set aside like any invalid one.
                check_depth("resource", item)
                key, record = resource_snapshot(entity_type, item, "sync", received_at=received)
                value = self.serde.encode("Snapshot", record, topic=self.topic)
                if len(value) + len(key) > self.record_budget:
                    raise LimitExceeded(
                        "too_large",
                        f"its snapshot is {len(value)} bytes; records above "
                        f"{self.record_budget} bytes cannot be written",
                    )
            except (InvalidSnapshot, LimitExceeded, SchemaError, orjson.JSONEncodeError) as exc:
                invalid += 1
                code = getattr(exc, "code", "invalid_snapshot")
                metrics.RECORDS_SET_ASIDE.labels("sync", code).inc()
                # Recorded with its reason, never dropped silently.
                logger.error(
                    "invalid resource from Akeneo",
                    extra={"entity_type": entity_type, "reason": str(exc), "code": code},
                )
                futures.append(
                    self.producer.send_nowait(
                        SNAPSHOTS_INVALID,
                        self._set_aside_value(item),
                        None,
                        [
                            ("error.type", "InvalidSnapshot"),
                            ("error.reason", code),
                            ("error.message", str(exc).encode(errors="backslashreplace")[:4000]),
                        ],
                    )
                )
                continue
            # Each synced entity starts a trace (`runtime.tracing`; nothing when not exporting).
            with tracing.stage(
                "ingest.sync", None, {"entity_key": key}, kind=tracing.SpanKind.PRODUCER
            ) as trace_headers:
                futures.append(
                    self.producer.send_nowait(self.topic, value, key, trace_headers or None)
                )
        return asyncio.gather(*futures), len(items) - invalid, invalid

    def _set_aside_value(self, item: Json) -> bytes | None:
        """The resource as the invalid record's value, when it can be written at all."""
        try:
            value = orjson.dumps(item)
        except orjson.JSONEncodeError:
            return None  # nested too deep to write back: the headers say why
        return value if len(value) <= self.record_budget else None

    # ---------------------------------------------------------------- ranges
    def _search(self, since: datetime | None, low: datetime | None, below: datetime | None) -> str:
        """`updated` filter: after `since`, at or after `low`, before `below` (each optional)."""
        criteria: list[Json] = []
        after = since
        if low is not None:
            # Akeneo keeps `updated` to the second: "> low - 1 s" is "at or after low".
            step = low - timedelta(seconds=1)
            after = step if after is None else max(after, step)
        if after is not None:
            criteria.append({"operator": ">", "value": _stamp(after)})
        if below is not None:
            criteria.append({"operator": "<", "value": _stamp(below)})
        return orjson.dumps({"updated": criteria}).decode() if criteria else ""

    async def _split(
        self, entity_type: str, since: datetime | None, started: datetime
    ) -> list[str]:
        """First pages of `streams` `updated` ranges holding about as many items each.

        Range i holds [b(i), b(i+1)); the first is open below and the last above, so every
        item is in exactly one range whatever the boundaries (they only balance the work).
        Boundaries are found by bisection on counts (`with_count`), in parallel.
        Returns [] when there is too little to be worth splitting.
        """
        path = _SERVER_DELTA[entity_type]

        async def count(below: datetime | None) -> int:
            search = self._search(since, None, below)
            return await self.client.count(path, {"search": search} if search else {})

        total = await count(None)
        k = self.streams
        if total < k * self.page_size:
            return []
        tolerance = max(1, total // (8 * k))
        floor = (since or _EPOCH).replace(microsecond=0)
        ceiling = started.replace(microsecond=0) + timedelta(seconds=1)

        async def boundary(target: int) -> datetime:
            low, high = floor, ceiling  # count(low) <= target <= count(high)
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                mid = mid.replace(microsecond=0)
                found = await count(mid)
                if abs(found - target) <= tolerance:
                    return mid
                low, high = (mid, high) if found < target else (low, mid)
            return high

        found = await asyncio.gather(*(boundary(total * j // k) for j in range(1, k)))
        bounds: list[datetime | None] = [None, *sorted(set(found)), None]
        firsts = []
        for low, below in itertools.pairwise(bounds):
            params: dict[str, Any] = {"pagination_type": "search_after", "limit": self.page_size}
            search = self._search(since, low, below)
            if search:
                params["search"] = search
            firsts.append(f"{path}?{urlencode(params)}")
        logger.info(
            "sync split into ranges",
            extra={"entity_type": entity_type, "ranges": len(firsts), "items": total},
        )
        return firsts

    # ---------------------------------------------------------------- sources
    def _pages(
        self, entity_type: str, since: datetime | None, cursor: str | None
    ) -> AsyncIterator[tuple[list[Json], str | None]]:
        limit = self.page_size
        if entity_type in _SERVER_DELTA:
            params: dict[str, Any] = {"pagination_type": "search_after", "limit": limit}
            if since is not None:
                params["search"] = self._search(since, None, None)
            if cursor:
                return self.client.pages(cursor)
            return self.client.pages(_SERVER_DELTA[entity_type], params)
        if entity_type in _SIMPLE_LISTS:
            params = {"limit": limit}
            if entity_type == "category":
                params["with_position"] = "true"
            pages = (
                self.client.pages(cursor)
                if cursor
                else self.client.pages(_SIMPLE_LISTS[entity_type], params)
            )
            if entity_type == "category" and since is not None:
                return _updated_after(pages, since)
            return pages
        if entity_type == "family_variant":
            return self._nested(f"{API}/families", None, "/variants", "family")
        return self._nested(f"{API}/attributes", _OPTION_TYPES, "/options", None)

    async def _nested(
        self, parent_path: str, parent_types: tuple[str, ...] | None, child: str, link: str | None
    ) -> AsyncIterator[tuple[list[Json], str | None]]:
        # Variants and options are listed per parent; they are few, so a resumed run reads
        # them again from the start (no cursor is kept).
        async for parents, _ in self.client.pages(parent_path, {"limit": self.page_size}):
            for parent in parents:
                if parent_types is not None and parent.get("type") not in parent_types:
                    continue
                path = f"{parent_path}/{parent['code']}{child}"
                async for items, _ in self.client.pages(path, {"limit": self.page_size}):
                    if link is not None:
                        # The variant resource does not name its family; the hub's model does.
                        items = [{**i, link: parent["code"]} for i in items]
                    yield items, None


async def _updated_after(
    pages: AsyncIterator[tuple[list[Json], str | None]], since: datetime
) -> AsyncIterator[tuple[list[Json], str | None]]:
    """Keep items whose `updated` is after `since` (lists Akeneo cannot filter for us)."""
    async for items, cursor in pages:
        kept = []
        for item in items:
            raw = item.get("updated")
            try:
                changed = datetime.fromisoformat(raw) > since if isinstance(raw, str) else True
            except ValueError:
                changed = True
            if changed:
                kept.append(item)
        yield kept, cursor
