"""Batch look-ups by key stay primary-key look-ups when the statistics do not know the rows.

The case: the tables were analyzed while they held another integration's rows, and a new
integration has since written thousands. A look-up written `key = ANY(...)` was then planned
on `integration_id` alone, filtering that integration's every row on each call (the guard's
read, each batch; the ID mappings' look-ups, by another index that starts the same way).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pim_hub.registry.mapping import GET_ENTRIES
from pim_hub.services.dispatcher.guard_store import READ

pytestmark = pytest.mark.integration

ROWS = 3000


def _scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a JSON plan that reads one of the tables looked up."""
    if plan.get("Relation Name") in ("delivered_versions", "delivered_jobs", "entity_mappings"):
        yield plan
    for child in plan.get("Plans", ()):
        yield from _scans(child)


def _fill(cur: psycopg.Cursor[Any], integ: str) -> None:
    cur.execute(
        "INSERT INTO delivered_versions (integration_id, entity_key, field_key, version, job_id)"
        " SELECT %s, 'product:' || g, 'values|name||', now(), 'job-' || g"
        " FROM generate_series(1, %s) AS g",
        (integ, ROWS),
    )
    cur.execute(
        "INSERT INTO delivered_jobs (integration_id, job_id)"
        " SELECT %s, 'job-' || g FROM generate_series(1, %s) AS g",
        (integ, ROWS),
    )
    cur.execute(
        "INSERT INTO entity_mappings (integration_id, entity_type, source_key, target_id)"
        " SELECT %s, 'product', 'sku-' || g, g::text FROM generate_series(1, %s) AS g",
        (integ, ROWS),
    )


def _explain(
    cur: psycopg.Cursor[Any], query: sql.Composable, params: Any = None
) -> list[dict[str, Any]]:
    cur.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + query, params)
    plan = cur.fetchone()[0][0]["Plan"]  # type: ignore[index]
    return list(_scans(plan))


def _check(scans: list[dict[str, Any]], key_column: str) -> None:
    assert scans
    for scan in scans:
        cond = scan.get("Index Cond", "")
        assert "integration_id" in cond and key_column in cond, scan
        # Not a row of the integration read only to be thrown away.
        assert scan.get("Rows Removed by Filter", 0) == 0, scan


def test_lookups_use_every_key_column_for_an_integration_the_statistics_do_not_know(
    database_url: str,
) -> None:
    known, new = f"known-{uuid.uuid4().hex[:8]}", f"new-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        _fill(cur, known)
        cur.execute("ANALYZE delivered_versions, delivered_jobs, entity_mappings")
        _fill(cur, new)
        keys = [f"product:{i}" for i in range(1, 201, 2)]
        jobs = [f"job-{i}" for i in range(1, 201, 2)]
        read = READ.format(
            i=sql.Literal(new),
            entities=sql.Literal(json.dumps(keys)),
            jobs=sql.Literal(json.dumps(jobs)),
        )
        scans = _explain(cur, read)
        _check([s for s in scans if s["Relation Name"] == "delivered_versions"], "entity_key")
        _check([s for s in scans if s["Relation Name"] == "delivered_jobs"], "job_id")
        skus = [f"sku-{i}" for i in range(1, 201, 2)]
        _check(_explain(cur, sql.SQL(GET_ENTRIES), (skus, new, "product")), "source_key")
        # And the lookups find what is there.
        cur.execute(read)
        rows = cur.fetchall()
        assert sorted(r[0] for r in rows if r[0] is not None) == sorted(keys)
        assert sorted(r[3] for r in rows if r[0] is None) == sorted(jobs)
        cur.execute(GET_ENTRIES, (skus, new, "product"))
        assert {k: v for k, v, _ in cur.fetchall()} == {s: s[4:] for s in skus}
        for integ in (known, new):
            cur.execute("DELETE FROM delivered_versions WHERE integration_id = %s", (integ,))
            cur.execute("DELETE FROM delivered_jobs WHERE integration_id = %s", (integ,))
            cur.execute("DELETE FROM entity_mappings WHERE integration_id = %s", (integ,))
