"""The console's heaviest pages at 1 million deliveries and 100,000 entities.

Seeds the deliveries projection (latest status per job: 1,000,000 rows over 30 days, 20
integrations, 1% dead and 2% retrying, about 1,400 in the last hour), the entity model (100,000
products with their values) and the dead-letter read model (10,000 letters), then times each
page in process (Starlette's test client: no network between the browser and the console, the
real broker and PostgreSQL behind it). Target: every page under 300 ms at the 95th percentile;
`ratio_*` is 300 ms over the page's p95 (above 1: within the target). The overview's broker and
count figures are collected in the background at most every HUB_CONSOLE_REFRESH_S;
`overview_collection_ms` is what one collection takes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import psycopg
from pydantic import SecretStr

from bench.bench_webhook import environment
from pim_hub.console import data
from pim_hub.console.app import create_app
from pim_hub.console.auth import hash_password
from pim_hub.console.settings import ConsoleSettings, ConsoleUser
from pim_hub.devstack.stack import settings_from_env

TARGET_MS = 300.0
DELIVERIES = 1_000_000
ENTITIES = 100_000
INTEGRATIONS = 20


def seed(url: str, deliveries: int, entities: int) -> dict[str, float]:
    """Fill the projections with generate_series (seconds it took, per table)."""
    took: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(
            """
            INSERT INTO integrations (id, name, driver, enabled, config)
            SELECT 'bench-' || i, 'bench ' || i, 'webhook', true,
                   jsonb_build_object('url', 'http://127.0.0.1:9/' || i, 'secret', 'x')
            FROM generate_series(1, %s) AS i
            """,
            (INTEGRATIONS,),
        )
        conn.execute(
            """
            INSERT INTO deliveries (job_id, mutation_id, integration_id, driver, entity_key,
                                    priority, status, attempt, error_kind, error_message,
                                    occurred_at)
            SELECT 'job-' || g, 'mut-' || g, 'bench-' || (1 + g %% %s), 'webhook',
                   'product:' || lpad((g %% %s)::text, 12, '0'),
                   (ARRAY['immediate', 'normal', 'low'])[1 + g %% 3],
                   CASE WHEN g %% 100 = 0 THEN 'dead' WHEN g %% 50 = 1 THEN 'retrying'
                        ELSE 'delivered' END,
                   1 + g %% 4,
                   CASE WHEN g %% 100 = 0 THEN 'http_422' END,
                   CASE WHEN g %% 100 = 0 THEN 'the target refused the payload' END,
                   now() - (g %% 2592000) * interval '1 second'
            FROM generate_series(1, %s) AS g
            """,
            (INTEGRATIONS, entities, deliveries),
        )
        took["deliveries_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        conn.execute(
            """
            INSERT INTO entities (entity_key, entity_type, code, version, mutation_id, operation,
                                  state, mutated_at)
            SELECT 'product:' || lpad(g::text, 12, '0'), 'product', 'SKU-' || g, now(),
                   'mut-' || g, 'update',
                   jsonb_build_object('identifier', 'SKU-' || g, 'values',
                       jsonb_build_object('name', jsonb_build_array(jsonb_build_object(
                           'locale', 'en_US', 'scope', null, 'data', 'Product ' || g)))),
                   now()
            FROM generate_series(0, %s - 1) AS g
            """,
            (entities,),
        )
        took["entities_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        # The dead-letter read model (migration 0022) holds what hub.jobs.dead holds: one
        # letter per dead delivery (1%), spread over the topic's partitions. The topic of
        # this run is empty, so the page's catch-up finds nothing to copy and these stay.
        conn.execute(
            """
            INSERT INTO dead_letters (dead_partition, dead_offset, job_id, integration_id, kind,
                                      reason, job, dead_at)
            SELECT g %% 6, g / 6, 'job-' || (g * 100), 'bench-' || (1 + (g * 100) %% %s),
                   'http_422', 'the target refused the payload',
                   jsonb_build_object('job_id', 'job-' || (g * 100), 'attempt', 4,
                       'mutation', jsonb_build_object('entity_key',
                           'product:' || lpad(((g * 100) %% %s)::text, 12, '0'))),
                   now() - (g %% 2592000) * interval '1 second'
            FROM generate_series(1, %s / 100) AS g
            """,
            (INTEGRATIONS, entities, deliveries),
        )
        took["dead_letters_s"] = round(time.monotonic() - started, 1)
        conn.execute("VACUUM ANALYZE deliveries")
        conn.execute("VACUUM ANALYZE entities")
        conn.execute("VACUUM ANALYZE dead_letters")
    return took


def run(deliveries: int = DELIVERIES, entities: int = ENTITIES, rounds: int = 15) -> dict[str, Any]:
    """Seed, then time each page `rounds` times (after one warm-up request)."""
    from starlette.testclient import TestClient

    result: dict[str, Any] = {"deliveries": deliveries, "entities": entities, "rounds": rounds}
    with environment() as env:
        settings = settings_from_env(env)
        result.update(seed(settings.require_database(), deliveries, entities))
        user = ConsoleUser(
            name="bench", role="operator", password_hash=SecretStr(hash_password("bench"))
        )
        app = create_app(
            settings, ConsoleSettings(users=[user], secret_key=SecretStr("bench-console-key"))
        )
        with TestClient(app) as client:
            page = client.get("/login").text
            token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
            client.post("/login", data={"name": "bench", "password": "bench", "csrf_token": token})
            pages = {
                "overview": "/",
                "overview_live": "/overview/live",
                "integrations": "/integrations",
                "entity_by_sku": f"/entities?q=SKU-{entities // 2}",
                "dead_letters": "/dead",
                "audit": "/audit",
            }
            # The figures the overview collects in the background (broker and counts), timed
            # on their own: what one collection costs the broker and the database.
            console = app.state.console
            collections = []
            for _ in range(3):
                started = time.perf_counter()
                data.overview(settings, console.catalogue)
                collections.append((time.perf_counter() - started) * 1000)
            result["overview_collection_ms"] = round(statistics.median(collections), 1)
            for name, path in pages.items():
                first = client.get(path)
                if first.status_code != 200:
                    raise RuntimeError(f"{path} answered {first.status_code}: {first.text[:300]}")
                times = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                times.sort()
                p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                result[f"{name}_p50_ms"] = round(statistics.median(times), 1)
                result[f"{name}_p95_ms"] = round(p95, 1)
                result[f"ratio_{name}"] = round(TARGET_MS / p95, 2)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
