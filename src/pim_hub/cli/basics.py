"""`hub topics`, `hub db`, `hub produce` and `hub deliveries`: setting up and looking."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from pim_hub.cli.output import Output, OutputOpt, emit
from pim_hub.runtime.entry import fail as _fail
from pim_hub.runtime.entry import load_settings as _settings
from pim_hub.runtime.entry import need_bootstrap as _need_bootstrap
from pim_hub.runtime.entry import need_db as _need_db
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.limits import escape_controls, has_control

topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the hub.")
db_app = typer.Typer(no_args_is_help=True, help="PostgreSQL schema.")
produce_app = typer.Typer(no_args_is_help=True, help="Publish records by hand.")


@topics_app.command("apply")
def topics_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only")] = False,
    profile: Annotated[
        str, typer.Option(help="default, or production: replication 3, min.insync.replicas 2")
    ] = "default",
    progress: Annotated[bool, typer.Option(help="show a progress bar (stderr)")] = True,
) -> None:
    """Create missing topics and report (and fix) config drift; safe to run again.

    Prints a line per topic (created, updated, drift, ok) and a summary.
    """
    from confluent_kafka import KafkaException

    from pim_hub.cli.ops import _progress
    from pim_hub.runtime.kafka import TOPIC_PROFILES, apply_topics

    settings = _settings()
    _need_bootstrap(settings)
    if profile not in TOPIC_PROFILES:
        raise _fail(f"unknown profile {profile!r}; known: {', '.join(TOPIC_PROFILES)}")
    try:
        with _progress("topics", progress) as bar:
            report = apply_topics(settings, dry_run=dry_run, profile=profile, progress=bar)
    except KafkaException as exc:  # the broker refused or did not answer: a runtime failure
        raise _fail(f"the broker did not apply the topics: {exc}", 1) from exc
    for line in report.lines():
        typer.echo(line)


@topics_app.command("list")
def topics_list(output: OutputOpt = Output.table) -> None:
    """Show the topic catalogue."""
    from pim_hub.runtime.kafka import settings_catalogue

    rows = [
        {
            "name": spec.name,
            "partitions": spec.partitions,
            "retention_ms": spec.retention_ms,
            "cleanup_policy": spec.cleanup_policy,
            "doc": spec.doc,
        }
        for spec in settings_catalogue(Settings())
    ]

    def line(r: Any) -> str:
        days = r["retention_ms"] / 86400000
        retention = "forever" if r["retention_ms"] < 0 else f"{days:g}d"
        return (
            f"{r['name']:28} partitions={r['partitions']:<3} retention={retention:<8} "
            f"cleanup={r['cleanup_policy']:<8} {r['doc']}"
        )

    emit(rows, output, line)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending database migrations (idempotent)."""
    from pim_hub.runtime import db

    settings = _settings()
    url = _need_db(settings)
    typer.echo(f"database {db.describe_url(url)}")
    applied = db.migrate(url)
    typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


@produce_app.command("snapshot")
def produce_snapshot(
    file: Annotated[Path, typer.Argument(help="an Akeneo-shaped JSON entity")],
    entity_type: Annotated[str, typer.Option(help="product, category, family, ...")] = "product",
    delete: Annotated[bool, typer.Option(help="publish a deletion tombstone")] = False,
    version: Annotated[str | None, typer.Option(help="source version; default: `updated`")] = None,
) -> None:
    """Publish one snapshot to pim.snapshots from a JSON file."""
    from pim_hub.runtime.kafka import make_producer, produce_sync
    from pim_hub.schemas import topics
    from pim_hub.schemas.entities import entity_key
    from pim_hub.schemas.errors import InvalidSnapshot
    from pim_hub.schemas.limits import LimitExceeded, check_json_text, escape_controls
    from pim_hub.schemas.records import snapshot_record
    from pim_hub.schemas.serde import Serde
    from pim_hub.services.mutator.processing import snapshot_problem

    settings = _settings()
    _need_bootstrap(settings)
    try:
        text = file.read_bytes()
        payload = orjson.loads(text)
        # The mutator's own limits, checked here so a bad file is refused with its reason
        # instead of published and set aside.
        check_json_text("the payload", text.decode(), payload)
        key = entity_key(entity_type, payload)
    except (
        OSError,
        UnicodeDecodeError,
        orjson.JSONDecodeError,
        InvalidSnapshot,
        LimitExceeded,
    ) as exc:
        raise _fail(f"{file}: {escape_controls(str(exc))}") from exc
    updated = payload.get("updated") if isinstance(payload, dict) else None
    version = version or (updated if isinstance(updated, str) else None)
    # The mutator's own checks (every field's and value's type, the version): what it would
    # set aside on pim.snapshots.invalid is refused here, before it is published.
    problem = snapshot_problem(
        entity_type, key, None if delete else payload, version, settings.version_max_future_s
    )
    if problem is not None:
        raise _fail(f"{file}: the mutator would refuse this snapshot: {escape_controls(problem)}")
    record = snapshot_record(entity_type, key, None if delete else payload, version, "external")
    msg = produce_sync(
        make_producer(settings),
        topics.SNAPSHOTS,
        Serde(settings.registry_config()).encode("Snapshot", record, topic=topics.SNAPSHOTS),
        key=key,
    )
    typer.echo(
        f"published {escape_controls(key)} to {topics.SNAPSHOTS}[{msg.partition()}]@{msg.offset()}"
    )


def deliveries(
    status: Annotated[str | None, typer.Option()] = None,
    integration: Annotated[str | None, typer.Option()] = None,
    entity: Annotated[str | None, typer.Option(help="entity key")] = None,
    job: Annotated[str | None, typer.Option(help="job id")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    output: OutputOpt = Output.table,
) -> None:
    """Latest status per job, newest first, from the PostgreSQL projection.

    The operation (create, update, delete) comes with the status; for statuses written
    before it did (DeliveryStatus v1) it is shown when the local entity model
    (`hub entities project`) holds the job's mutation as the entity's latest one, "-" otherwise.
    """
    import psycopg
    from psycopg.rows import dict_row

    settings = _settings()
    where, params = [], []
    for col, val in (
        ("d.status", status),
        ("d.integration_id", integration),
        ("d.entity_key", entity),
        ("d.job_id", job),
    ):
        if val and has_control(val):
            raise _fail(f"{col.removeprefix('d.')} {val!r} contains a control character")
        if val:
            where.append(f"{col} = %s")
            params.append(val)
    sql = (
        "SELECT d.job_id, d.mutation_id, d.integration_id, d.driver, d.entity_key, d.priority,"
        " d.status, d.attempt, d.error_kind, d.error_message, d.target_ref, d.duration_ms,"
        " d.occurred_at, COALESCE(d.operation, e.operation) AS operation"
        " FROM deliveries d LEFT JOIN entities e"
        " ON e.entity_key = d.entity_key AND e.mutation_id = d.mutation_id"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY d.occurred_at DESC LIMIT %s"
    try:
        with psycopg.connect(_need_db(settings), row_factory=dict_row) as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
    except psycopg.Error as exc:
        raise _fail(f"cannot read the deliveries: {exc}", 1) from exc

    def line(r: Any) -> str:
        err = f"  {r['error_kind']}: {r['error_message']}" if r["error_message"] else ""
        # Keys and error messages come from outside: control characters shown escaped.
        return escape_controls(
            f"{r['occurred_at']:%Y-%m-%d %H:%M:%S} {r['status']:9} {r['integration_id']:16} "
            f"{r['job_id']:40} {r['operation'] or '-':6} {r['entity_key']:40} "
            f"attempt {r['attempt']}{err}"
        )

    emit(rows, output, line)


def doctor(
    profile: Annotated[
        str, typer.Option(help="the topic profile the cluster should match (hub topics apply)")
    ] = "default",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the brokers")] = 15.0,
) -> None:
    """Check the Kafka cluster for the hub: connection, auth, topics, ACLs, size limits.

    Prints one line per check with a fix for each problem; exits 1 when a check failed.
    """
    from pydantic import ValidationError

    from pim_hub.drivers.discovery import discover
    from pim_hub.ops.doctor import diagnose
    from pim_hub.services.mutator.settings import MutatorSettings

    try:
        settings = _settings()
        mutator = MutatorSettings()
    except ValidationError as exc:
        raise _fail(f"the settings are invalid: {exc}") from exc
    _need_bootstrap(settings)
    report = diagnose(
        settings,
        mutator=mutator,
        drivers=sorted(discover().drivers),
        profile=profile,
        timeout_s=timeout,
    )
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
