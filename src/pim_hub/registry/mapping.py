"""ID mapping service over PostgreSQL: (integration, entity type, source key) ↔ target id."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pim_hub.drivers.base import MappingEntry

# Many keys are looked up one primary-key lookup each, whatever the statistics say: a lateral
# subquery per key (`OFFSET 0` keeps the planner from flattening it into a join) has every key
# column as its index condition, and no other index starts with those columns (migration
# 0008). Written `source_key = ANY(%s)`, the planner could plan on (integration_id,
# entity_type) alone and filter every mapping row of an integration its statistics did not
# know yet (a new one, or one grown since the last ANALYZE), once per call.

#: Target ids and their time of last change: (keys, integration, entity type).
GET_ENTRIES = """
SELECT m.source_key, m.target_id, m.updated_at FROM unnest(%s::text[]) AS k(key),
       LATERAL (SELECT source_key, target_id, updated_at FROM entity_mappings
                 WHERE integration_id = %s AND entity_type = %s AND source_key = k.key
                OFFSET 0) AS m
"""


class PostgresMappingService:
    """EntityMappingService for one integration, sharing a connection pool."""

    def __init__(self, pool: AsyncConnectionPool[Any], integration_id: str) -> None:
        self.pool = pool
        self.integration_id = integration_id

    async def get(self, entity_type: str, source_key: str) -> str | None:
        """The target id of one source key, or None."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT target_id FROM entity_mappings"
                " WHERE integration_id = %s AND entity_type = %s AND source_key = %s",
                (self.integration_id, entity_type, source_key),
            )
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def get_many(self, entity_type: str, source_keys: list[str]) -> dict[str, str]:
        """Target ids of many source keys (missing ones are absent)."""
        found = await self.get_entries(entity_type, source_keys)
        return {key: entry.target_id for key, entry in found.items()}

    async def get_entry(self, entity_type: str, source_key: str) -> MappingEntry | None:
        """The target id of one source key with the time it last changed, or None."""
        found = await self.get_entries(entity_type, [source_key])
        return found.get(source_key)

    async def get_entries(
        self, entity_type: str, source_keys: list[str]
    ) -> dict[str, MappingEntry]:
        """Target ids with their time of last change (missing source keys are absent)."""
        if not source_keys:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(GET_ENTRIES, (source_keys, self.integration_id, entity_type))
            rows = await cur.fetchall()
        return {str(k): MappingEntry(str(v), at) for k, v, at in rows}

    async def put(self, entity_type: str, source_key: str, target_id: str) -> None:
        """Remember a mapping (replacing an older one)."""
        await self.put_many(entity_type, {source_key: target_id})

    async def put_many(self, entity_type: str, pairs: dict[str, str]) -> None:
        """Remember many mappings in one statement.

        Writing a mapping that is already stored changes nothing, not even its time.
        """
        if not pairs:
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                """
                INSERT INTO entity_mappings (integration_id, entity_type, source_key, target_id)
                SELECT %s, %s, s, t FROM unnest(%s::text[], %s::text[]) AS u(s, t)
                ON CONFLICT (integration_id, entity_type, source_key)
                DO UPDATE SET target_id = EXCLUDED.target_id, updated_at = now()
                WHERE entity_mappings.target_id <> EXCLUDED.target_id
                """,
                (self.integration_id, entity_type, list(pairs), list(pairs.values())),
            )

    async def remove(self, entity_type: str, source_key: str) -> bool:
        """Forget a mapping (e.g. after the target deleted it); False when there was none."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM entity_mappings"
                " WHERE integration_id = %s AND entity_type = %s AND source_key = %s",
                (self.integration_id, entity_type, source_key),
            )
            return bool(cur.rowcount > 0)

    async def source_for(self, entity_type: str, target_id: str) -> str | None:
        """The source key of a target id, or None."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT source_key FROM entity_mappings"
                " WHERE integration_id = %s AND entity_type = %s AND target_id = %s"
                " ORDER BY updated_at DESC LIMIT 1",
                (self.integration_id, entity_type, target_id),
            )
            row = await cur.fetchone()
        return str(row[0]) if row else None


async def open_pool(url: str, max_size: int = 8) -> AsyncConnectionPool[Any]:
    """An open async pool with autocommit connections."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.set_autocommit(True)

    pool = AsyncConnectionPool(url, min_size=1, max_size=max_size, configure=configure, open=False)
    await pool.open(wait=True, timeout=15)
    return pool
