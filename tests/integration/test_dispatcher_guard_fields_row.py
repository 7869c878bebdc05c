"""A creation's field versions recorded as one listing row: what is stored, and that every
decision and every version read stays what one row per field gave."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection

from pim_hub.registry.mapping import open_pool
from pim_hub.schemas.events import Change
from pim_hub.services.dispatcher.core.guard import (
    ENTITY_FIELD,
    FIELDS_FIELD,
    FORCE_MODES,
    Delivered,
    decide,
    field_key,
)
from pim_hub.services.dispatcher.guard_store import GuardStore, Recording

pytestmark = pytest.mark.integration

BASE = datetime(2024, 1, 1, tzinfo=UTC)
FIELDS = [
    Change(field="values", attribute=a, locale=loc, scope=None, new='"x"')
    for a in ("name", "color", "size")
    for loc in ("en_US", "fr_FR")
]


@dataclass(frozen=True)
class _Job:
    job_id: str
    entity: str
    operation: str
    changes: tuple[Change, ...]
    version: str
    mode: str = "live"


async def _apply(store: GuardStore, integ: str, job: _Job, listing: bool) -> tuple[Any, ...]:
    """What the dispatcher does with one job: read, decide, record what was delivered."""
    async with store.reading(integ, [job.entity], [job.job_id]) as (txn, stored, delivered):
        if job.job_id in delivered and job.mode not in FORCE_MODES:
            return ("delivered before",)
        dec = decide(
            job.job_id,
            job.operation,
            job.changes,
            job.version,
            stored.get(job.entity, {}),
            job.mode,
        )
        if dec.verdict in ("deliver", "partial"):
            create = listing and job.operation == "create"
            await txn.record([Recording(job.entity, dec.record, job.job_id, dec.force, create)])
        return (dec.verdict, dec.keep, dec.reason)


async def _versions(store: GuardStore, integ: str, entities: list[str]) -> dict[str, Any]:
    async with store.reading(integ, entities, []) as (_, stored, _):
        return {e: dict(v) for e, v in stored.items()}


async def _rows(conn: AsyncConnection[Any], integ: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT entity_key, field_key, covers FROM delivered_versions"
        " WHERE integration_id = %s ORDER BY entity_key, field_key",
        (integ,),
    )
    return await cur.fetchall()


def _at(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


async def _listing(url: str, integ: str) -> None:
    pool = await open_pool(url, max_size=2)
    store = GuardStore(pool)
    keys = [field_key(c) for c in FIELDS]
    try:
        created = _Job("c1", "product:p", "create", tuple(FIELDS), _at(10))
        assert (await _apply(store, integ, created, True))[0] == "deliver"
        async with pool.connection() as conn:
            rows = await _rows(conn, integ)
        # Two rows for a creation of six values: the entity and the list of its fields.
        assert rows == [("product:p", ENTITY_FIELD, None), ("product:p", FIELDS_FIELD, keys)]
        at10 = Delivered(BASE + timedelta(seconds=10), "c1")
        assert await _versions(store, integ, ["product:p"]) == {
            "product:p": {ENTITY_FIELD: at10, **dict.fromkeys(keys, at10)}
        }
        # Read again after a crash: every listed field is this job's own.
        async with store.reading(integ, ["product:p"], []) as (_, stored, _):
            again = decide("c1", "create", FIELDS, _at(10), stored["product:p"])
        assert again.verdict == "already"

        # A newer update of one field gets a row of its own, which wins over the list; an
        # older one is stale for that field alone.
        newer = _Job("u1", "product:p", "update", (FIELDS[0],), _at(20))
        assert (await _apply(store, integ, newer, True))[0] == "deliver"
        older = _Job("u0", "product:p", "update", (FIELDS[0], FIELDS[1]), _at(15))
        verdict, keep, _ = await _apply(store, integ, older, True)
        assert (verdict, keep) == ("partial", (1,))
        seen = (await _versions(store, integ, ["product:p"]))["product:p"]
        assert seen[keys[0]] == Delivered(BASE + timedelta(seconds=20), "u1")
        assert seen[keys[1]] == Delivered(BASE + timedelta(seconds=15), "u0")
        assert seen[keys[2]] == at10

        # Deleted, then created again with fewer fields: what only the old list held keeps
        # its version, in a row of its own.
        gone = _Job("d1", "product:p", "delete", (), _at(30))
        assert (await _apply(store, integ, gone, True))[0] == "deliver"
        again_created = _Job("c2", "product:p", "create", (FIELDS[0], FIELDS[2]), _at(40))
        assert (await _apply(store, integ, again_created, True))[0] == "deliver"
        seen = (await _versions(store, integ, ["product:p"]))["product:p"]
        at40 = Delivered(BASE + timedelta(seconds=40), "c2")
        assert seen[keys[0]] == at40 and seen[keys[2]] == at40
        assert seen[keys[3]] == at10 and seen[keys[1]].by == "u0"
        async with pool.connection() as conn:
            rows = await _rows(conn, integ)
        assert ("product:p", FIELDS_FIELD, [keys[2]]) in rows  # keys[0] has its own row

        # A forced replay of the first creation puts every field back, over the list.
        forced = _Job("r1", "product:p", "create", tuple(FIELDS), _at(10), "replay-force")
        assert (await _apply(store, integ, forced, True))[0] == "deliver"
        seen = (await _versions(store, integ, ["product:p"]))["product:p"]
        assert {seen[k] for k in keys} == {Delivered(BASE + timedelta(seconds=10), "r1")}
    finally:
        await pool.close()


def test_a_creation_records_its_fields_as_one_row(database_url: str, unique: str) -> None:
    asyncio.run(_listing(database_url, f"gl-{unique}"))


def _random_jobs(rng: random.Random, count: int) -> list[_Job]:
    jobs: list[_Job] = []
    for n in range(count):
        if jobs and rng.random() < 0.1:
            jobs.append(rng.choice(jobs))  # a job read again (after a crash, or duplicated)
            continue
        operation = rng.choice(["create", "create", "update", "update", "update", "delete"])
        changes: tuple[Change, ...] = ()
        if operation != "delete":
            changes = tuple(rng.sample(FIELDS, rng.randint(1, len(FIELDS))))
        mode = "replay-force" if rng.random() < 0.08 else "live"
        # Few distinct instants, out of order: ties and reorderings are common.
        version = _at(rng.randint(0, 12))
        jobs.append(
            _Job(f"j{n}", f"product:{rng.randint(0, 2)}", operation, changes, version, mode)
        )
    return jobs


async def _same_as_rows(url: str, integ: str, seed: int) -> None:
    pool = await open_pool(url, max_size=2)
    store = GuardStore(pool)
    rows, listed = f"{integ}-rows", f"{integ}-listed"
    entities = [f"product:{i}" for i in range(3)]
    try:
        for step, job in enumerate(_random_jobs(random.Random(seed), 150)):
            expected = await _apply(store, rows, job, False)
            got = await _apply(store, listed, job, True)
            assert got == expected, f"seed {seed}, step {step}: {job}"
            want = await _versions(store, rows, entities)
            assert await _versions(store, listed, entities) == want, f"seed {seed}, step {step}"
        async with pool.connection() as conn:
            assert any(r[1] == FIELDS_FIELD for r in await _rows(conn, listed))
    finally:
        await pool.close()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_decisions_and_versions_match_one_row_per_field(
    database_url: str, unique: str, seed: int
) -> None:
    asyncio.run(_same_as_rows(database_url, f"gq-{unique}", seed))
