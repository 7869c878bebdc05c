"""The guard's PostgreSQL side: one read per batch, one recording statement, lock order,
what a reader waiting on the locks sees, and a recording that fails."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import AsyncConnection

from pim_hub.registry.mapping import open_pool
from pim_hub.services.dispatcher.guard_store import GuardStore, Recording

pytestmark = pytest.mark.integration

T1, T2, T3 = (datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s in (1, 2, 3))


async def _scenario(url: str, integ: str) -> None:
    pool = await open_pool(url, max_size=4)
    store = GuardStore(pool)
    try:
        keys = ["product:a", "product:b", 'product:it\'s "quoted"']
        async with store.locked(integ, keys) as txn:
            await txn.record(
                [
                    Recording("product:a", {"values|name||": T2}, "job-a"),
                    Recording('product:it\'s "quoted"', {"values|name|en_US|": T1}, "job-q"),
                    Recording("product:b", {}, "job-b"),  # no version: the job alone
                ]
            )
        async with store.locked(integ, keys) as txn:
            # An older normal delivery never moves a version back; a forced one does.
            await txn.record([Recording("product:a", {"values|name||": T1}, "job-old")])
            await txn.record(
                [Recording('product:it\'s "quoted"', {"values|name|en_US|": T3}, "j", force=True)]
            )
        async with store.locked(integ, keys) as txn:
            stored, delivered = await txn.read(keys, ["job-a", "job-b", "job-x", "job-old"])
        assert stored["product:a"]["values|name||"].version == T2
        assert stored["product:a"]["values|name||"].by == "job-a"
        assert stored['product:it\'s "quoted"']["values|name|en_US|"].version == T3
        assert "product:b" not in stored
        # job-old was delivered (the target got it) though its version was not recorded.
        assert delivered == {"job-a", "job-b", "job-old"}

        # Two batches sharing an entity run one after the other, in either key order.
        order: list[str] = []

        async def batch(name: str, ekeys: list[str], hold: float) -> None:
            async with store.locked(integ, ekeys):
                order.append(f"{name}+")
                await asyncio.sleep(hold)
                order.append(f"{name}-")

        await asyncio.wait_for(
            asyncio.gather(
                batch("x", ["product:c", "product:d"], 0.3),
                batch("y", ["product:d", "product:c"], 0.0),
            ),
            timeout=10,
        )
        assert order in (["x+", "x-", "y+", "y-"], ["y+", "y-", "x+", "x-"])
    finally:
        await pool.close()


def test_guard_store_reads_records_and_serialises(database_url: str, unique: str) -> None:
    asyncio.run(_scenario(database_url, f"gs-{unique}"))


async def _waiting_reader(url: str, integ: str) -> None:
    pool = await open_pool(url, max_size=4)
    store = GuardStore(pool)
    try:
        holding = asyncio.Event()
        seen: list[object] = []

        async def writer() -> None:
            async with store.locked(integ, ["product:v"]) as txn:
                holding.set()
                await txn.record([Recording("product:v", {"values|name||": T2}, "job-w")])
                await asyncio.sleep(0.5)  # the reader is waiting on the lock meanwhile

        async def reader() -> None:
            await holding.wait()
            async with store.reading(integ, ["product:v"], ["job-w"]) as (_, stored, done):
                seen.append((stored["product:v"]["values|name||"].version, done))

        await asyncio.wait_for(asyncio.gather(writer(), reader()), timeout=10)
        # Sent together with the lock statement, the read still sees the holder's commit.
        assert seen == [(T2, {"job-w"})]

        # A recording that fails at COMMIT raises, records nothing and releases the locks.
        with pytest.raises(Exception, match="timestamp"):
            async with store.locked(integ, ["product:w"]) as txn:
                bad = {"values|name||": "not a time"}
                await txn.record([Recording("product:w", bad, "job-x")])  # type: ignore[arg-type]
        async with store.reading(integ, ["product:w"], ["job-x"]) as (_, stored, done):
            assert "product:w" not in stored and done == set()
    finally:
        await pool.close()


def test_a_reader_waiting_on_the_locks_sees_the_holders_recording(
    database_url: str, unique: str
) -> None:
    asyncio.run(_waiting_reader(database_url, f"gs-{unique}"))


async def _synchronous_commit(conn: AsyncConnection[Any]) -> Any:
    cur = await conn.execute("SHOW synchronous_commit")
    return (await cur.fetchone() or [None])[0]


async def _commit_modes(url: str, integ: str) -> None:
    pool = await open_pool(url, max_size=1)  # one connection: the setting must not leak
    try:
        async with pool.connection() as conn:
            default = await _synchronous_commit(conn)
        seen = []
        for durable in (False, True):
            store = GuardStore(pool, synchronous_commit=durable)
            async with store.reading(integ, ["product:s"], []) as (txn, _, _):
                seen.append(await _synchronous_commit(txn.conn))
                await txn.record([Recording("product:s", {"values|name||": T1}, f"job-{durable}")])
            async with pool.connection() as conn:
                # Outside a guard transaction (a driver's mapping write): the server's own.
                seen.append(await _synchronous_commit(conn))
        assert seen == ["off", default, default, default]
        async with GuardStore(pool).reading(integ, ["product:s"], ["job-False"]) as (_, _, done):
            assert done == {"job-False"}  # committed all the same
    finally:
        await pool.close()


def test_guard_transactions_commit_without_waiting_for_the_wal_only_when_asked(
    database_url: str, unique: str
) -> None:
    asyncio.run(_commit_modes(database_url, f"gs-{unique}"))
