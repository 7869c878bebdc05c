"""REST sync from Akeneo (full or delta by `updated`) into pim.snapshots, resumable per page."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import orjson
import psycopg

from hub import metrics
from hub.kafka import AsyncProducer
from schemas.serde import Serde
from schemas.topics import SNAPSHOTS, SNAPSHOTS_INVALID
from services.ingest.akeneo import API, AkeneoClient
from services.ingest.events import Json
from services.ingest.snapshots import resource_snapshot
from services.mutator.core.errors import InvalidSnapshot

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
_OPTION_TYPES = ("pim_catalog_simpleselect", "pim_catalog_multiselect")
_AKENEO_TIME = "%Y-%m-%d %H:%M:%S"


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

    def begin(self, entity_type: str, mode: str, since: datetime | None, started: datetime) -> None:
        """Record a new run (replacing an abandoned one)."""
        self._conn.execute(
            "INSERT INTO sync_checkpoints (source, entity_type, mode, since, run_started_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (source, entity_type) DO UPDATE SET "
            "mode = EXCLUDED.mode, since = EXCLUDED.since, "
            "run_started_at = EXCLUDED.run_started_at, cursor = NULL, items = 0, updated_at = now()",
            (self.source, entity_type, mode, since, started),
        )

    def advance(self, entity_type: str, cursor: str | None, items: int) -> None:
        """A page is acknowledged: the run resumes after it."""
        self._conn.execute(
            "UPDATE sync_checkpoints SET cursor = %s, items = items + %s, updated_at = now() "
            "WHERE source = %s AND entity_type = %s",
            (cursor, items, self.source, entity_type),
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
    """A progress bar per entity type with counts and rate (on a terminal)."""

    def __init__(self) -> None:
        from rich.progress import (
            Progress as Bar,
        )
        from rich.progress import (
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Bar(
            SpinnerColumn(),
            TextColumn("{task.description:16}"),
            TextColumn("{task.completed:>9,.0f} items"),
            TextColumn("{task.fields[rate]:>8.0f}/s"),
            TimeElapsedColumn(),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._bar.start()

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
        self._bar.stop()


def default_progress() -> Progress:
    """A bar on a terminal, log lines otherwise."""
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


async def _prefetch(
    pages: AsyncIterator[tuple[list[Json], str | None]], depth: int = 2
) -> AsyncIterator[tuple[list[Json], str | None]]:
    """Read the next pages while the current one is published (bounded: memory stays flat)."""
    queue: asyncio.Queue[tuple[list[Json], str | None] | BaseException | None] = asyncio.Queue(
        depth
    )

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

    Per page: publish every snapshot, wait until the broker acknowledged all of them, then
    store the next page as the resume point. When a type completes, its watermark becomes
    the time the run started (`updated` filters are evaluated by Akeneo and pages are ordered
    by uuid, not by `updated`, so no earlier point is safe).
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
        topic: str = SNAPSHOTS,
    ) -> None:
        self.topic = topic
        self.client = client
        self.producer = producer
        self.serde = serde
        self.store = store
        self.page_size = page_size
        self.overlap = timedelta(seconds=overlap_s)
        self.progress = progress or LogProgress()
        self._now = now or (lambda: datetime.now(UTC))

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
        async for items, next_cursor in _prefetch(self._pages(entity_type, since, cursor)):
            published, invalid = await self._publish(entity_type, items)
            report.published += published
            report.invalid += invalid
            report.pages += 1
            # Only now is every snapshot of this page acknowledged: move the resume point.
            self.store.advance(entity_type, next_cursor, published + invalid)
            self.progress.advance(entity_type, published + invalid)
        self.store.complete(entity_type, started)
        self.progress.end(entity_type)
        report.seconds = time.monotonic() - started_clock
        return report

    async def _publish(self, entity_type: str, items: list[Json]) -> tuple[int, int]:
        futures = []
        invalid = 0
        for item in items:
            try:
                key, record = resource_snapshot(entity_type, item, "sync")
            except InvalidSnapshot as exc:
                invalid += 1
                # Recorded with its reason, never dropped silently.
                logger.error("invalid resource from Akeneo", extra={"entity_type": entity_type})
                futures.append(
                    self.producer.send_nowait(
                        SNAPSHOTS_INVALID,
                        orjson.dumps(item),
                        None,
                        [("error.type", "InvalidSnapshot"), ("error.message", str(exc))],
                    )
                )
                continue
            value = self.serde.encode("Snapshot", record, topic=self.topic)
            futures.append(self.producer.send_nowait(self.topic, value, key))
        if futures:
            await asyncio.gather(*futures)
        metrics.SYNC_ITEMS.labels(entity_type).inc(len(items) - invalid)
        metrics.SYNC_INVALID.labels(entity_type).inc(invalid)
        return len(items) - invalid, invalid

    # ---------------------------------------------------------------- sources
    def _pages(
        self, entity_type: str, since: datetime | None, cursor: str | None
    ) -> AsyncIterator[tuple[list[Json], str | None]]:
        limit = self.page_size
        if entity_type in _SERVER_DELTA:
            params: dict[str, Any] = {"pagination_type": "search_after", "limit": limit}
            if since is not None:
                stamp = since.astimezone(UTC).strftime(_AKENEO_TIME)
                params["search"] = orjson.dumps(
                    {"updated": [{"operator": ">", "value": stamp}]}
                ).decode()
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
