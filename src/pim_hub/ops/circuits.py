"""The circuits of an integration's dispatchers, as they last wrote them (`hub integrations show`).

Each dispatcher process writes its view of each integration's circuit breaker and adaptive
concurrency to `dispatcher_circuits` (services/dispatcher/circuits.py): at every change and
every few seconds. A row not refreshed for STALE_S belongs to a process that stopped without
cleaning up (a crash, a kill): it is shown as `stale` rather than hidden, so an operator sees
it, and swept by the dispatchers after a day.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

#: Rows older than this come from a process that no longer writes (it writes every 5 s).
STALE_S = 60.0

QUERY = """
SELECT driver, priority, process, state, opened_at, last_probe, next_probe, concurrency,
       concurrency_max, throttled_until, updated_at,
       updated_at < now() - make_interval(secs => %(stale)s) AS stale
FROM dispatcher_circuits WHERE integration_id = %(integration)s
ORDER BY priority, driver, process
"""


def circuits(database_url: str, integration_id: str) -> list[dict[str, Any]]:
    """One row per dispatcher process and priority serving the integration, times as ISO."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(QUERY, {"integration": integration_id, "stale": STALE_S}).fetchall()
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()} for row in rows
    ]
