"""The version guard's PostgreSQL side: per-entity locks, delivered versions, recording."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.dispatcher.core.guard import Delivered

# Lists travel as one JSON text parameter: psycopg dumps a Python list element by element
# (in Python), which cost more per job than everything else the guard does.

#: Takes the advisory locks in the order given (the caller sorts them).
LOCK = (
    "SELECT count(pg_advisory_xact_lock(k::bigint)) FROM jsonb_array_elements_text(%s::jsonb) AS k"
)

#: Delivered versions of some entities and which of some jobs were delivered, in one query.
READ = """
SELECT entity_key, field_key, version, job_id FROM delivered_versions
 WHERE integration_id = %(i)s
   AND entity_key IN (SELECT jsonb_array_elements_text(%(entities)s::jsonb))
UNION ALL
SELECT NULL, NULL, NULL, job_id FROM delivered_jobs
 WHERE integration_id = %(i)s
   AND job_id IN (SELECT jsonb_array_elements_text(%(jobs)s::jsonb))
"""

#: Delivered jobs and their versions, in one statement. A version only moves forward, except
#: for a forced replay, which records what the target now holds. A batch holds distinct
#: entities, so the two inserts never touch the same row.
RECORD = """
WITH jobs AS (
    INSERT INTO delivered_jobs (integration_id, job_id)
    SELECT %(i)s, j FROM jsonb_array_elements_text(%(jobs)s::jsonb) AS j
    ON CONFLICT DO NOTHING
), forward AS (
    INSERT INTO delivered_versions AS d (integration_id, entity_key, field_key, version, job_id)
    SELECT %(i)s, e, f, v, j
      FROM jsonb_to_recordset(%(forward)s::jsonb) AS u(e text, f text, v timestamptz, j text)
    ON CONFLICT (integration_id, entity_key, field_key) DO UPDATE SET
        version = EXCLUDED.version, job_id = EXCLUDED.job_id, updated_at = now()
        WHERE EXCLUDED.version >= d.version
)
INSERT INTO delivered_versions AS d (integration_id, entity_key, field_key, version, job_id)
SELECT %(i)s, e, f, v, j
  FROM jsonb_to_recordset(%(forced)s::jsonb) AS u(e text, f text, v timestamptz, j text)
ON CONFLICT (integration_id, entity_key, field_key) DO UPDATE SET
    version = EXCLUDED.version, job_id = EXCLUDED.job_id, updated_at = now()
"""


def lock_id(integration_id: str, entity_key: str) -> int:
    """A signed 64-bit advisory lock id for one integration and entity."""
    digest = hashlib.blake2b(f"{integration_id}|{entity_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class GuardTransaction:
    """One open transaction holding the locks of some entities of one integration."""

    def __init__(self, conn: AsyncConnection[Any], integration_id: str) -> None:
        self.conn = conn
        self.integration_id = integration_id

    async def read(
        self, entity_keys: list[str], job_ids: list[str]
    ) -> tuple[dict[str, dict[str, Delivered]], set[str]]:
        """(entity key -> field key -> last delivered version, jobs delivered before).

        A job read again after a crash (or duplicated) was perhaps delivered already.
        """
        cur = await self.conn.execute(
            READ,
            {"i": self.integration_id, "entities": _json(entity_keys), "jobs": _json(job_ids)},
        )
        stored: dict[str, dict[str, Delivered]] = defaultdict(dict)
        delivered: set[str] = set()
        for ekey, fkey, version, job_id in await cur.fetchall():
            if ekey is None:
                delivered.add(str(job_id))
            else:
                stored[ekey][fkey] = Delivered(version, job_id)
        return stored, delivered

    async def record(self, rows: list[tuple[str, Mapping[str, datetime], str, bool]]) -> None:
        """Remember delivered jobs and versions: (entity key, field key -> version, job id, force).

        A version only moves forward, except for a forced replay, which puts the target
        back to an older state on purpose and so records what the target now holds.
        """
        if not rows:
            return
        forward: list[dict[str, Any]] = []
        forced: list[dict[str, Any]] = []
        for ekey, fields, job_id, force in rows:
            into = forced if force else forward
            for fkey, version in fields.items():
                into.append({"e": ekey, "f": fkey, "v": version, "j": job_id})
        await self.conn.execute(
            RECORD,
            {
                "i": self.integration_id,
                "jobs": _json(sorted({r[2] for r in rows})),
                "forward": _json(forward),
                "forced": _json(forced),
            },
        )


class GuardStore:
    """Opens guard transactions on a shared pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    @asynccontextmanager
    async def locked(
        self, integration_id: str, entity_keys: list[str]
    ) -> AsyncIterator[GuardTransaction]:
        """A transaction holding the advisory locks of the entities until it ends.

        One transaction per batch: the locks span read → deliver → record, so two
        dispatchers (say the immediate and the low group) never deliver the same entity at
        once and an older value cannot slip in between another delivery and its recording.
        Every batch takes its locks in ascending id order, so two batches wanting
        overlapping entities queue behind each other instead of deadlocking; the reads run
        as a later statement than the locks, so (READ COMMITTED) they see whatever the
        previous holder recorded. A crashed process's locks go with its connection.
        """
        ids = sorted({lock_id(integration_id, k) for k in entity_keys})
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(LOCK, (_json([str(k) for k in ids]),))
            yield GuardTransaction(conn, integration_id)
