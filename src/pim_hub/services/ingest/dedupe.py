"""Event ids already handled (Akeneo delivers at least once): in memory and in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection, sql

logger = logging.getLogger(__name__)


class SeenIds:
    """Remembers the last `size` event ids; the oldest are forgotten first."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        """Remember an id (refreshing it if known)."""
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


# Ids travel as one JSON text literal quoted by psycopg (sql.Literal) so that BEGIN and the
# INSERT go as one simple query: one round trip to claim a batch, one to commit it.
CLAIM = sql.SQL("""
BEGIN;
INSERT INTO ingest_handled_events (consumer_group, event_id)
SELECT {group}, e FROM jsonb_array_elements_text({ids}::jsonb) AS e ORDER BY e
ON CONFLICT DO NOTHING
RETURNING event_id
""")

RECORD = sql.SQL("""
INSERT INTO ingest_handled_events (consumer_group, event_id)
SELECT {group}, e FROM jsonb_array_elements_text({ids}::jsonb) AS e ORDER BY e
ON CONFLICT DO NOTHING
""")

#: The enricher's consumer group: the receiver asks its record of handled ids.
ENRICHER_GROUP = "hub.ingest.enricher"

KNOWN = (
    "SELECT event_id FROM ingest_handled_events WHERE consumer_group = %s AND event_id = ANY(%s)"
)

PRUNE = "DELETE FROM ingest_handled_events WHERE handled_at < now() - make_interval(secs => %s)"


class HandledEvents:
    """The event ids a consumer group has handled, in PostgreSQL: kept across restarts and
    shared by the group's replicas.

    `claim()` inserts a batch's ids in a transaction left open and returns the new ones;
    `confirm()` commits it once the batch's snapshots are acknowledged, `release()` rolls it
    back. A crash before the commit rolls the claim back with the connection, so the events
    read again are not taken for duplicates. While a claim is open, another replica claiming
    one of its ids waits for the outcome (the rows are locked), so the same event delivered to
    two replicas at once makes one snapshot. Ids are inserted in sorted order: two batches
    sharing ids queue behind each other instead of deadlocking.
    """

    def __init__(self, url: str, group: str) -> None:
        self.url = url
        self.group = group
        self._conn: AsyncConnection[Any] | None = None
        self._open = False

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await AsyncConnection.connect(self.url, autocommit=True)
        return self._conn

    async def _drop(self) -> None:
        self._open = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def claim(self, event_ids: Iterable[str]) -> set[str]:
        """Insert the ids in a new transaction; those not handled before are returned."""
        ids = sorted(set(event_ids))
        if not ids:
            return set()
        if self._open:
            raise RuntimeError("the previous claim is still open")
        conn = await self._connection()
        query = CLAIM.format(group=sql.Literal(self.group), ids=sql.Literal(_json(ids)))
        try:
            self._open = True
            cur = await conn.execute(query)
            while cur.nextset():  # the INSERT's rows are the last result
                pass
            return {str(r[0]) for r in await cur.fetchall()}
        except BaseException:
            await self.release()
            raise

    async def confirm(self) -> None:
        """Commit the open claim (nothing if none is open)."""
        if not self._open:
            return
        conn = await self._connection()
        try:
            await conn.execute("COMMIT")
            self._open = False
        except BaseException:
            await self._drop()  # the outcome is unknown: the caller records again
            raise

    async def release(self) -> None:
        """Roll the open claim back (nothing if none is open)."""
        if not self._open or self._conn is None:
            self._open = False
            return
        try:
            await self._conn.execute("ROLLBACK")
            self._open = False
        except Exception:
            await self._drop()  # closing the connection rolls back as well

    async def record(self, event_ids: Iterable[str]) -> None:
        """Record ids outside any claim (idempotent): after a commit whose outcome is unknown."""
        ids = sorted(set(event_ids))
        if not ids:
            return
        await self.release()
        conn = await self._connection()
        try:
            await conn.execute(
                RECORD.format(group=sql.Literal(self.group), ids=sql.Literal(_json(ids)))
            )
        except BaseException:
            await self._drop()
            raise

    async def prune(self, retention_s: float) -> int:
        """Forget the ids (of every group) handled longer ago than retention_s; the count."""
        if self._open:
            raise RuntimeError("cannot prune while a claim is open")
        conn = await self._connection()
        try:
            cur = await conn.execute(PRUNE, (retention_s,))
        except BaseException:
            await self._drop()
            raise
        return max(cur.rowcount, 0)

    async def close(self) -> None:
        """Roll back any open claim and close the connection."""
        await self._drop()


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class HandledLookup:
    """Which event ids the enricher handled before: the receiver's replay protection across
    restarts (its memory, SeenIds, is lost with the process).

    A request replayed after a restart (a captured Event Platform request, a legacy one inside
    its timestamp window) is answered as duplicates instead of published again. The answer is
    bounded in time (Akeneo's Events API waits 0.5 s): a slow or unavailable database answers
    "none", and the enricher, which checks the same record, still makes no second snapshot.
    """

    def __init__(self, url: str, group: str = ENRICHER_GROUP, timeout_s: float = 0.2) -> None:
        self.url = url
        self.group = group
        self.timeout_s = timeout_s
        self._conn: AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def known(self, event_ids: Sequence[str]) -> set[str]:
        """The ids among event_ids handled before; empty when the database does not answer."""
        try:
            return await asyncio.wait_for(self._known(list(event_ids)), self.timeout_s)
        except (TimeoutError, psycopg.Error, OSError) as exc:
            logger.warning("handled event ids not checked", extra={"error": str(exc)})
            await self.close()
            return set()

    async def _known(self, ids: list[str]) -> set[str]:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = await AsyncConnection.connect(self.url, autocommit=True)
            cur = await self._conn.execute(KNOWN, (self.group, ids))
            return {str(r[0]) for r in await cur.fetchall()}

    async def close(self) -> None:
        """Close the connection (opened again on the next question)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
