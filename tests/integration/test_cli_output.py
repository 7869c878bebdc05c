"""One output option for listing commands: table for people, json and jsonl for scripts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.schemas import topics

pytestmark = pytest.mark.integration


def _hub(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def test_deliveries_show_job_id_and_operation_in_every_format(
    hub_env: dict[str, str], database_url: str, unique: str
) -> None:
    job_id, key, mutation = f"job-{unique}", f"product:{unique}", f"mut-{unique}"
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deliveries (job_id, mutation_id, integration_id, driver, entity_key,"
            " priority, status, attempt, error_kind, error_message, occurred_at)"
            " VALUES (%s, %s, %s, 'webhook', %s, 'normal', 'dead', 4, 'http_422', 'refused', %s)",
            (job_id, mutation, f"out-{unique}", key, now),
        )
        conn.execute(
            "INSERT INTO entities (entity_key, entity_type, code, mutation_id, operation,"
            " mutated_at) VALUES (%s, 'product', NULL, %s, 'update', %s)",
            (key, mutation, now),
        )
    as_json = _hub(hub_env, "deliveries", "--job", job_id, "--output", "json")
    assert as_json.exit_code == 0, as_json.output
    [row] = json.loads(as_json.stdout)
    assert row["job_id"] == job_id and row["operation"] == "update"
    assert row["status"] == "dead" and row["error_kind"] == "http_422"

    as_lines = _hub(hub_env, "deliveries", "--job", job_id, "-o", "jsonl")
    assert [json.loads(line)["job_id"] for line in as_lines.stdout.splitlines()] == [job_id]

    table = _hub(hub_env, "deliveries", "--job", job_id)
    [line] = table.stdout.splitlines()
    assert job_id in line and " update " in line and "http_422: refused" in line

    bad = _hub(hub_env, "deliveries", "--output", "xml")
    assert bad.exit_code == 2


def test_topics_and_dead_letters_list_as_json(hub_env: dict[str, str], unique: str) -> None:
    listed = _hub(hub_env, "topics", "list", "-o", "jsonl")
    assert listed.exit_code == 0, listed.output
    names = {json.loads(line)["name"] for line in listed.stdout.splitlines()}
    assert {topics.SNAPSHOTS, topics.SNAPSHOTS_INVALID, topics.JOBS_DEAD} <= names

    dead = _hub(hub_env, "dead", "list", "--integration", f"none-{unique}", "-o", "json")
    assert dead.exit_code == 0, dead.output
    assert json.loads(dead.stdout) == []


def test_deliveries_take_the_operation_from_the_status_and_still_show_old_ones(
    hub_env: dict[str, str], database_url: str, unique: str
) -> None:
    from pathlib import Path

    from pim_hub.schemas.serde import Serde
    from pim_hub.services.projections.deliveries import project

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "avro"
    serde = Serde()
    # A status of schema v1 (no operation) and one of v2, as the projector decodes them.
    old = serde.decode("DeliveryStatus", (fixtures / "v1" / "DeliveryStatus.bin").read_bytes())
    new = serde.decode("DeliveryStatus", (fixtures / "v2" / "DeliveryStatus.bin").read_bytes())
    now = datetime.now(UTC)
    old_job, new_job = f"old-{unique}", f"new-{unique}"
    integration = f"ops-{unique}"
    old |= {"job_id": old_job, "integration_id": integration, "entity_key": f"product:o{unique}"}
    new |= {"job_id": new_job, "integration_id": integration, "entity_key": f"product:n{unique}"}
    new |= {"operation": "delete", "occurred_at": now}
    with psycopg.connect(database_url) as conn:
        project(conn, [old, new])
        # A later status written by an older dispatcher keeps the operation already known.
        project(conn, [{**new, "operation": None, "status": "retrying", "attempt": 2}])

    listed = _hub(hub_env, "deliveries", "--integration", integration, "-o", "json")
    assert listed.exit_code == 0, listed.output
    rows = {r["job_id"]: r for r in json.loads(listed.stdout)}
    assert rows[new_job]["operation"] == "delete" and rows[new_job]["status"] == "retrying"
    assert rows[old_job]["operation"] is None  # no entity model row either: shown as "-"
    table = _hub(hub_env, "deliveries", "--integration", integration).stdout.splitlines()
    [new_line] = [line for line in table if new_job in line]
    [old_line] = [line for line in table if old_job in line]
    assert " delete " in new_line and " - " in old_line
