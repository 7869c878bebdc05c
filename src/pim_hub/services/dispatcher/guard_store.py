"""The version guard's PostgreSQL side: per-entity locks, delivered versions, recording."""

from __future__ import annotations

import contextlib
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pim_hub.services.dispatcher.core.guard import ENTITY_FIELD, FIELDS_FIELD, Delivered

# Lists travel as one JSON text literal: psycopg dumps a Python list element by element
# (in Python), which cost more per job than everything else the guard does.
#
# A batch costs two round trips: BEGIN, the locks and the read go as one simple query (its
# statements run one after the other, each with a snapshot of its own, so the read sees
# what the previous lock holder committed), and the recording goes with the COMMIT. The
# values are quoted by psycopg (sql.Literal); simple queries take no parameters.

#: Takes the advisory locks in the order given (the caller sorts them).
LOCK = sql.SQL(
    "SELECT count(pg_advisory_xact_lock(k::bigint)) FROM jsonb_array_elements_text({ids}::jsonb) AS k"
)

#: Delivered versions of some entities and which of some jobs were delivered, in one query.
#: One primary-key lookup per key, whatever the statistics say: a lateral subquery per key
#: (`OFFSET 0` keeps the planner from flattening it into a join) has both key columns as its
#: index condition. Written `entity_key = ANY(...)`, the plan depended on the statistics: for
#: an integration they did not know yet (new, or grown since the last ANALYZE) the planner
#: trusted `integration_id` alone and filtered that integration's every row, each batch (43 ms
#: a batch after 6,000 jobs, growing with each; 0.4-0.7 ms this way). `IN (SELECT ...)` was
#: worse: a hash join over a sequential scan of both tables.
READ = sql.SQL("""
SELECT d.entity_key, d.field_key, d.version, d.job_id, d.covers
  FROM jsonb_array_elements_text({entities}::jsonb) AS k(key),
       LATERAL (SELECT entity_key, field_key, version, job_id, covers FROM delivered_versions
                 WHERE integration_id = {i} AND entity_key = k.key OFFSET 0) AS d
UNION ALL
SELECT NULL, NULL, NULL, j.job_id, NULL
  FROM jsonb_array_elements_text({jobs}::jsonb) AS k(key),
       LATERAL (SELECT job_id FROM delivered_jobs
                 WHERE integration_id = {i} AND job_id = k.key OFFSET 0) AS j
""")

#: The oldest job of each entity pending under another priority (not held longer than the
#: hold limit): a job newer than it waits (per-entity order across lanes).
READ_PENDING = sql.SQL("""
UNION ALL
SELECT k.key, {pending_key}, p.version, NULL, NULL
  FROM jsonb_array_elements_text({entities}::jsonb) AS k(key),
       LATERAL (SELECT min(version) AS version FROM dispatch_pending
                 WHERE integration_id = {i} AND entity_key = k.key AND priority <> {priority}
                   AND registered_at > now() - make_interval(secs => {hold})) AS p
 WHERE p.version IS NOT NULL
""")

#: Which of the jobs named by a batch's jobs as the one they must not overtake have finished
#: (per-entity order across lanes for jobs not read yet): settled, or delivered.
READ_SETTLED = sql.SQL("""
UNION ALL
SELECT NULL, {settled_key}, NULL, s.job_id, NULL
  FROM jsonb_array_elements_text({prevs}::jsonb) AS k(key),
       LATERAL (SELECT job_id FROM dispatch_settled
                 WHERE integration_id = {i} AND job_id = k.key
                UNION ALL
                SELECT job_id FROM delivered_jobs
                 WHERE integration_id = {i} AND job_id = k.key
                LIMIT 1) AS s
""")

#: Jobs read and not finished, by the dispatcher that read them (a job read again rewrites
#: its row).
REGISTER = sql.SQL("""
INSERT INTO dispatch_pending (integration_id, entity_key, job_id, priority, version)
SELECT u.i, u.e, u.j, u.p, u.v::timestamptz
  FROM jsonb_to_recordset({rows}::jsonb) AS u(i text, e text, j text, p text, v text)
ON CONFLICT (integration_id, entity_key, job_id) DO UPDATE SET
    priority = EXCLUDED.priority, registered_at = now()
""")

#: Finished jobs leave the pending list (with the COMMIT of their guard transaction).
SETTLE = sql.SQL("""
DELETE FROM dispatch_pending AS d
 USING jsonb_to_recordset({rows}::jsonb) AS u(e text, j text)
 WHERE d.integration_id = {i} AND d.entity_key = u.e AND d.job_id = u.j
""")

#: Finished jobs not recorded as delivered join the settled list (a delivered job is in
#: delivered_jobs, which the read looks at too: most jobs cost no row here).
MARK_SETTLED = sql.SQL("""
INSERT INTO dispatch_settled (integration_id, job_id)
SELECT {i}, j FROM jsonb_array_elements_text({jobs}::jsonb) AS j
ON CONFLICT DO NOTHING
""")

#: Settled jobs older than the retention (a job naming one of them is not held: see
#: `SETTLED_RETENTION_S`).
PURGE_SETTLED = sql.SQL(
    "DELETE FROM dispatch_settled WHERE settled_at < now() - make_interval(secs => {keep})"
)

#: How long the settled list keeps a job. A job naming a job made longer ago than this is
#: not held (its predecessor finished, or was given up, long before).
SETTLED_RETENTION_S = 7 * 24 * 3600.0

#: The field key under which the read reports an entity's oldest job pending in another lane.
PENDING_FIELD = "@pending|||"
#: The field key under which the read reports a named predecessor job that has finished.
SETTLED_FIELD = "@settled|||"

#: Delivered jobs and their versions (each naming the mutation that delivered it: a replay of
#: the same mutation under a new job id is recognised), in one statement. A version only moves forward, except
#: for a forced replay, which records what the target now holds. The versions travel as one
#: object per job ({"e": entity, "j": job, "f": {field key: version}}): a creation has a
#: version for each of its 100-odd values, and one object per value repeated the entity and
#: the job each time (a batch of creations was a megabyte of JSON). A creation's fields go
#: as one '@fields|||' row listing them (`lists`, {"e", "j", "v": version, "c": [keys]});
#: its writer has already written out what the row it replaces listed, so it is replaced
#: whatever its version. A batch holds distinct entities and an entity's objects name
#: distinct field keys, so no two inserts touch the same row.
RECORD = sql.SQL("""
WITH jobs AS (
    INSERT INTO delivered_jobs (integration_id, job_id)
    SELECT {i}, j FROM jsonb_array_elements_text({jobs}::jsonb) AS j
    ON CONFLICT DO NOTHING
), forward AS (
    INSERT INTO delivered_versions AS d (integration_id, entity_key, field_key, version, job_id)
    SELECT {i}, u.e, f.key, f.value::timestamptz, u.j
      FROM jsonb_to_recordset({forward}::jsonb) AS u(e text, j text, f jsonb),
           jsonb_each_text(u.f) AS f
    ON CONFLICT (integration_id, entity_key, field_key) DO UPDATE SET
        version = EXCLUDED.version, job_id = EXCLUDED.job_id, updated_at = now()
        WHERE EXCLUDED.version >= d.version
), lists AS (
    INSERT INTO delivered_versions AS d
        (integration_id, entity_key, field_key, version, job_id, covers)
    SELECT {i}, u.e, {fields_key}, u.v::timestamptz, u.j, u.c
      FROM jsonb_to_recordset({lists}::jsonb) AS u(e text, j text, v text, c jsonb)
    ON CONFLICT (integration_id, entity_key, field_key) DO UPDATE SET
        version = EXCLUDED.version, job_id = EXCLUDED.job_id, covers = EXCLUDED.covers,
        updated_at = now()
)
INSERT INTO delivered_versions AS d (integration_id, entity_key, field_key, version, job_id)
SELECT {i}, u.e, f.key, f.value::timestamptz, u.j
  FROM jsonb_to_recordset({forced}::jsonb) AS u(e text, j text, f jsonb),
       jsonb_each_text(u.f) AS f
ON CONFLICT (integration_id, entity_key, field_key) DO UPDATE SET
    version = EXCLUDED.version, job_id = EXCLUDED.job_id, updated_at = now()
""")


class Recording(NamedTuple):
    """One delivered job to remember: its entity, field key -> version, id, and how.

    `force`: a forced replay (versions may move back). `create`: a creation, whose fields
    may go as one '@fields|||' row. `by`: the id of the job's mutation, recorded with each
    version (what the guard recognises a delivered change by); the job id when absent.
    """

    entity_key: str
    fields: Mapping[str, datetime]
    job_id: str
    force: bool = False
    create: bool = False
    by: str | None = None


def lock_id(integration_id: str, entity_key: str) -> int:
    """A signed 64-bit advisory lock id for one integration and entity."""
    digest = hashlib.blake2b(f"{integration_id}|{entity_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _literal(text: str) -> sql.Literal:
    return sql.Literal(text)


class GuardTransaction:
    """One open transaction holding the locks of some entities of one integration."""

    def __init__(self, conn: AsyncConnection[Any], integration_id: str) -> None:
        self.conn = conn
        self.integration_id = integration_id
        self.pending: list[sql.Composed] = []  # recordings, sent with the COMMIT
        # What this transaction read, still true when it records (the entities are locked):
        # a creation's fields go as one row only where its entity's rows are known.
        self.read_keys: set[str] = set()
        self.own: dict[str, AbstractSet[str]] = {}  # entity key -> keys with rows of their own
        self.lists: dict[str, tuple[Delivered, list[str]]] = {}  # its '@fields|||' row
        #: entity key -> version of its oldest job pending under another priority.
        self.pending_older: dict[str, datetime] = {}
        #: Of the predecessor jobs asked about, those that have finished.
        self.settled: set[str] = set()

    def read_statement(
        self,
        entity_keys: list[str],
        job_ids: list[str],
        lane: tuple[str, float] | None = None,
        prevs: list[str] | None = None,
    ) -> sql.Composed:
        """The read of `read()`, to send along with other statements.

        `lane`: (this dispatcher's priority, hold limit in seconds) to read, too, the oldest
        job of each entity pending under another priority (`pending_older`). `prevs`: jobs
        named as predecessors, to learn which have finished (`settled`).
        """
        entities = _literal(_json(entity_keys))
        i = _literal(self.integration_id)
        parts: list[sql.Composable] = [
            READ.format(i=i, entities=entities, jobs=_literal(_json(job_ids)))
        ]
        if lane is not None:
            parts.append(
                READ_PENDING.format(
                    i=i,
                    entities=entities,
                    pending_key=_literal(PENDING_FIELD),
                    priority=_literal(lane[0]),
                    hold=sql.Literal(float(lane[1])),
                )
            )
        if prevs:
            parts.append(
                READ_SETTLED.format(
                    i=i, prevs=_literal(_json(prevs)), settled_key=_literal(SETTLED_FIELD)
                )
            )
        return sql.Composed(parts)

    async def read(
        self, entity_keys: list[str], job_ids: list[str]
    ) -> tuple[dict[str, dict[str, Delivered]], set[str]]:
        """(entity key -> field key -> last delivered version, jobs delivered before).

        A job read again after a crash (or duplicated) was perhaps delivered already.
        """
        cur = await self.conn.execute(self.read_statement(entity_keys, job_ids))
        return self.take_read(entity_keys, await cur.fetchall())

    def take_read(
        self, entity_keys: list[str], rows: list[Any]
    ) -> tuple[dict[str, dict[str, Delivered]], set[str]]:
        """The read's rows as `read()` returns them; the transaction remembers them too.

        A field listed in its entity's '@fields|||' row and without a row of its own reads
        as that row's version and job.
        """
        self.read_keys.update(entity_keys)
        stored: dict[str, dict[str, Delivered]] = defaultdict(dict)
        delivered: set[str] = set()
        found: list[tuple[str, Delivered, list[str]]] = []
        for ekey, fkey, version, job_id, covers in rows:
            if fkey == SETTLED_FIELD:
                self.settled.add(str(job_id))
            elif ekey is None:
                delivered.add(str(job_id))
            elif fkey == PENDING_FIELD:
                self.pending_older[ekey] = version
            elif fkey == FIELDS_FIELD:
                found.append((ekey, Delivered(version, job_id), list(covers or ())))
            else:
                stored[ekey][fkey] = Delivered(version, job_id)
        for ekey, fields in stored.items():
            # The keys of its own rows: a view, copied below only for an entity with a list
            # (whose fields get the listed ones added), not a copy per entity every batch.
            self.own[ekey] = fields.keys()
        for ekey, at, covers in found:
            fields = stored[ekey]
            self.own[ekey] = set(fields)
            self.lists[ekey] = (at, covers)
            for key in covers:
                fields.setdefault(key, at)
        return stored, delivered

    def settle(
        self, jobs: Sequence[tuple[str, str]], unrecorded: Sequence[str] | None = None
    ) -> None:
        """Jobs (entity key, job id) finished: off the pending list when the COMMIT goes.

        `unrecorded`: the ids of those not recorded as delivered in this transaction
        (skipped, retrying, dead, or delivered before), for the settled list; None: all.
        """
        if not jobs:
            return
        rows = [{"e": e, "j": j} for e, j in jobs]
        i = _literal(self.integration_id)
        self.pending.append(SETTLE.format(i=i, rows=_literal(_json(rows))))
        ids = [j for _, j in jobs] if unrecorded is None else list(unrecorded)
        if ids:
            self.pending.append(MARK_SETTLED.format(i=i, jobs=_literal(_json(ids))))

    async def record(self, rows: Sequence[Recording]) -> None:
        """Remember delivered jobs and their versions.

        A version only moves forward, except for a forced replay, which puts the target
        back to an older state on purpose and so records what the target now holds. A
        creation read in this transaction records its entity row and one row listing its
        fields (a field with a row of its own keeps it up to date: that row wins). The
        statement is sent with the COMMIT (an error raises when the transaction ends, and
        nothing is recorded).
        """
        if not rows:
            return
        forward: list[dict[str, Any]] = []
        forced: list[dict[str, Any]] = []
        lists: list[dict[str, Any]] = []
        for ekey, fields, job_id, force, create, by in rows:
            if not fields:
                continue
            job_id = by or job_id  # the versions name the delivering mutation
            at = fields.get(ENTITY_FIELD)
            if force or not create or at is None or ekey not in self.read_keys:
                (forced if force else forward).append({"e": ekey, "j": job_id, "f": dict(fields)})
                continue
            # A key with a row of its own keeps it up to date (that row wins over any list);
            # the rest go in the entity's list.
            has_row = self.own.get(ekey, frozenset())
            own = {k: v for k, v in fields.items() if k in has_row or v != at or k[0] == "@"}
            covers = [k for k in fields if k not in own]
            forward.append({"e": ekey, "j": job_id, "f": own})
            listed = self.lists.get(ekey)
            if listed is not None:
                # The list being replaced: what it alone held gets rows of its own.
                before, keys = listed
                alone = set(keys).difference(fields, has_row)
                if alone:
                    forward.append(
                        {
                            "e": ekey,
                            "j": before.by,
                            "f": dict.fromkeys(sorted(alone), before.version),
                        }
                    )
            elif not covers:
                continue
            lists.append({"e": ekey, "j": job_id, "v": at, "c": covers})
        self.pending.append(
            RECORD.format(
                i=_literal(self.integration_id),
                jobs=_literal(_json(sorted({r.job_id for r in rows}))),
                forward=_literal(_json(forward)),
                lists=_literal(_json(lists)),
                fields_key=_literal(FIELDS_FIELD),
                forced=_literal(_json(forced)),
            )
        )


class GuardStore:
    """Opens guard transactions on a shared pool.

    With `synchronous_commit=False` (HUB_DISPATCHER_GUARD_SYNCHRONOUS_COMMIT=false) a guard
    transaction's COMMIT returns before PostgreSQL has flushed its WAL to disk (`SET LOCAL`:
    only the guard's own transactions, never the drivers' mapping writes on the same pool). What
    it keeps: the commit is visible to every other transaction at once, in order, so two
    dispatchers taking the same entity's lock still see each other's recordings and an older
    value still cannot overwrite a newer one; a dispatcher crash loses nothing. What it risks:
    if the PostgreSQL server itself (or its machine) crashes, the recordings of the last moments
    (three times `wal_writer_delay`, 0.6 s by default) can vanish, although their status events
    on Kafka, the record of delivery, say delivered. The guard then believes the target holds an
    older version than it does: a job read again is delivered again (the same value, at least
    once), and only an older job of the same field arriving later (a retry or a replay of a
    value the lost batch superseded) could overwrite the newer value. The database stays
    consistent whatever happens (no corruption, only a lost tail).
    """

    def __init__(self, pool: AsyncConnectionPool[Any], synchronous_commit: bool = True) -> None:
        self.pool = pool
        self.synchronous_commit = synchronous_commit

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
        async with self._transaction(integration_id, entity_keys, None) as (txn, _, _):
            yield txn

    async def register(self, jobs: Sequence[Mapping[str, str | None]]) -> None:
        """Jobs read and not finished ({"i": integration, "e": entity, "j": job, "p":
        priority, "v": version}), for the dispatchers of the other priorities to wait for."""
        if not jobs:
            return
        async with self.pool.connection() as conn:
            await conn.execute(REGISTER.format(rows=_literal(_json(list(jobs)))))

    async def purge_settled(self, keep_s: float = SETTLED_RETENTION_S) -> None:
        """Forget settled jobs older than `keep_s`."""
        async with self.pool.connection() as conn:
            await conn.execute(PURGE_SETTLED.format(keep=sql.Literal(float(keep_s))))

    @asynccontextmanager
    async def reading(
        self,
        integration_id: str,
        entity_keys: list[str],
        job_ids: list[str],
        lane: tuple[str, float] | None = None,
        prevs: list[str] | None = None,
    ) -> AsyncIterator[tuple[GuardTransaction, dict[str, dict[str, Delivered]], set[str]]]:
        """`locked()` then `read()` in one round trip: (transaction, versions, delivered jobs).

        `lane`: (priority, hold limit in seconds) to read the jobs of the same entities
        pending under other priorities too (`GuardTransaction.pending_older`). `prevs`: the
        predecessor jobs named by the batch's jobs, to learn which have finished
        (`GuardTransaction.settled`).
        """
        async with self._transaction(integration_id, entity_keys, job_ids, lane, prevs) as opened:
            yield opened

    @asynccontextmanager
    async def _transaction(
        self,
        integration_id: str,
        entity_keys: list[str],
        job_ids: list[str] | None,
        lane: tuple[str, float] | None = None,
        prevs: list[str] | None = None,
    ) -> AsyncIterator[tuple[GuardTransaction, dict[str, dict[str, Delivered]], set[str]]]:
        ids = sorted({lock_id(integration_id, k) for k in entity_keys})
        async with self.pool.connection() as conn:
            txn = GuardTransaction(conn, integration_id)
            first: list[sql.Composable] = [BEGIN]
            if not self.synchronous_commit:
                first.append(ASYNC_COMMIT)
            first.append(LOCK.format(ids=_literal(_json([str(k) for k in ids]))))
            if job_ids is not None:
                first.append(txn.read_statement(entity_keys, job_ids, lane, prevs))
            try:
                cur = await conn.execute(sql.SQL("; ").join(first))
                stored: dict[str, dict[str, Delivered]] = {}
                delivered: set[str] = set()
                if job_ids is not None:
                    while cur.nextset():  # the read's rows are the last result
                        pass
                    stored, delivered = txn.take_read(entity_keys, await cur.fetchall())
                yield txn, stored, delivered
                await conn.execute(sql.SQL("; ").join([*txn.pending, COMMIT]))
            except BaseException:
                # Nothing of the batch is recorded; the connection goes back clean.
                with contextlib.suppress(Exception):
                    await conn.execute(ROLLBACK)
                raise


BEGIN = sql.SQL("BEGIN")
ASYNC_COMMIT = sql.SQL("SET LOCAL synchronous_commit = off")
COMMIT = sql.SQL("COMMIT")
ROLLBACK = sql.SQL("ROLLBACK")
