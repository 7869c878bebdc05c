"""The `hub` command line: one tool for everything a person does with the hub."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from hub import logs
from hub.registry_cli import drivers_app, registry_app
from hub.settings import Settings

app = typer.Typer(no_args_is_help=True, help="pim-hub: Akeneo PIM to commerce targets over Kafka.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the hub.")
db_app = typer.Typer(no_args_is_help=True, help="PostgreSQL schema.")
produce_app = typer.Typer(no_args_is_help=True, help="Publish records by hand.")
sandbox_app = typer.Typer(no_args_is_help=True, help="Simulators of the Akeneo and Magento APIs.")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(registry_app, name="integrations")
app.add_typer(drivers_app, name="drivers")
app.add_typer(produce_app, name="produce")
app.add_typer(sandbox_app, name="sandbox")
from hub.ops_cli import offsets, replay, resync, trace  # noqa: E402

app.command("replay")(replay)
app.command("resync")(resync)
app.command("trace")(trace)
app.command("offsets")(offsets)
from hub.exporter import exporter as exporter_command  # noqa: E402

app.command("exporter")(exporter_command)
from services.dispatcher.cli import dead_app  # noqa: E402

app.add_typer(dead_app, name="dead")
from services.mutator.cli import diff as diff_command  # noqa: E402
from services.mutator.cli import entities_app  # noqa: E402

app.add_typer(entities_app, name="entities")
app.command("diff")(diff_command)
from services.ingest.cli import ingest_app, sync_app  # noqa: E402

app.add_typer(ingest_app, name="ingest")
app.add_typer(sync_app, name="sync")


def _mount_sandboxes() -> None:
    from sandbox.akeneo.cli import app as akeneo_app
    from sandbox.magento.cli import app as magento_app

    sandbox_app.add_typer(akeneo_app, name="akeneo", help="Akeneo PIM REST API simulator.")
    sandbox_app.add_typer(magento_app, name="magento", help="Magento 2 REST API simulator.")


_mount_sandboxes()


def _settings() -> Settings:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    return settings


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(2)


def _need_bootstrap(settings: Settings) -> None:
    if not (settings.kafka.bootstrap or settings.kafka_bootstrap):
        raise _fail("HUB_KAFKA_BOOTSTRAP is not set (start a local broker with `hub up`)")


def _need_db(settings: Settings) -> str:
    if not settings.database_url:
        raise _fail("HUB_DATABASE_URL is not set (`hub up` prints one)")
    return settings.database_url


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo("pim-hub 0.1.0")


@app.command()
def up() -> None:
    """Start an embedded broker (and find or start PostgreSQL), prepare them, wait for Ctrl-C."""
    from hub import db, runtime
    from hub.kafka import apply_topics

    logs.configure("WARNING", "text")
    with runtime.embedded_runtime() as rt:
        env = {"HUB_KAFKA_BOOTSTRAP": rt.broker.bootstrap, "HUB_DATABASE_URL": rt.database.url}
        settings = Settings(kafka_bootstrap=rt.broker.bootstrap, database_url=rt.database.url)
        db.migrate(rt.database.url)
        apply_topics(settings)
        typer.echo(f"broker   {rt.broker.bootstrap} ({rt.broker.kind})")
        typer.echo(f"database {rt.database.url} ({rt.database.kind})")
        typer.echo("\nIn another shell:")
        for k, v in env.items():
            typer.echo(f"  export {k}='{v}'")
        typer.echo("\nCtrl-C stops the broker.")
        stop = False

        def on_signal(*_: Any) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        try:
            while not stop:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@topics_app.command("apply")
def topics_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only")] = False,
    profile: Annotated[
        str, typer.Option(help="default, or production: replication 3, min.insync.replicas 2")
    ] = "default",
) -> None:
    """Create missing topics and report (and fix) config drift; safe to run again."""
    from hub.kafka import TOPIC_PROFILES, apply_topics

    settings = _settings()
    _need_bootstrap(settings)
    if profile not in TOPIC_PROFILES:
        raise _fail(f"unknown profile {profile!r}; known: {', '.join(TOPIC_PROFILES)}")
    report = apply_topics(settings, dry_run=dry_run, profile=profile)
    for line in report.lines():
        typer.echo(line)
    if dry_run and (report.created or report.drift):
        typer.echo("(dry run: nothing changed)")


@topics_app.command("list")
def topics_list() -> None:
    """Show the topic catalogue."""
    from hub.kafka import settings_catalogue

    for spec in settings_catalogue(Settings()):
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms / 86400000:g}d"
        typer.echo(
            f"{spec.name:28} partitions={spec.partitions:<3} retention={retention:<8} "
            f"cleanup={spec.cleanup_policy:<8} {spec.doc}"
        )


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending database migrations (idempotent)."""
    from hub import db

    settings = _settings()
    applied = db.migrate(_need_db(settings))
    typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


@app.command()
def mutator(
    role: Annotated[
        str,
        typer.Option(
            help="all: both agents in one worker; mutate: snapshots → mutations; "
            "fanout: mutations → jobs, in a consumer group of its own. Under a full load run "
            "mutate and fanout workers: in one worker, fan-out waits behind the snapshots."
        ),
    ] = "all",
) -> None:
    """Run the mutator (snapshots → mutations → jobs); scale by starting more."""
    from services.mutator.app import ROLES, run

    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}", param_hint="--role")
    settings = _settings()
    _need_bootstrap(settings)
    sys.argv = [sys.argv[0], "worker", "--without-web"]
    run(settings, role)  # one of ROLES, checked above


@app.command()
def dispatcher(
    driver: Annotated[str, typer.Option(help="driver key, e.g. webhook or magento2")],
    priority: Annotated[str, typer.Option(help="immediate, normal or low")] = "normal",
) -> None:
    """Run the consumer group hub.dispatch.<driver>.<priority>."""
    from services.dispatcher.app import Dispatcher

    settings = _settings()
    _need_bootstrap(settings)
    _need_db(settings)
    try:
        disp = Dispatcher(settings, driver, priority)
    except (LookupError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    from hub.tuning import DISPATCHER_FULL_GC_EVERY, quiet_gc

    # Jobs are thousands of small objects: full collections skip the start-up heap, and come
    # a tenth as often (see quiet_gc).
    quiet_gc(full_every=DISPATCHER_FULL_GC_EVERY)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, disp.stop)
        await disp.run()

    asyncio.run(main())


@app.command()
def projector() -> None:
    """Project delivery statuses into PostgreSQL (the `hub deliveries` view)."""
    from services.dispatcher.projection import Projector

    settings = _settings()
    _need_bootstrap(settings)
    _need_db(settings)
    proj = Projector(settings)
    signal.signal(signal.SIGTERM, lambda *_: proj.stop())
    signal.signal(signal.SIGINT, lambda *_: proj.stop())
    proj.run()


@produce_app.command("snapshot")
def produce_snapshot(
    file: Annotated[Path, typer.Argument(help="an Akeneo-shaped JSON entity")],
    entity_type: Annotated[str, typer.Option(help="product, category, family, ...")] = "product",
    delete: Annotated[bool, typer.Option(help="publish a deletion tombstone")] = False,
    version: Annotated[str | None, typer.Option(help="source version; default: `updated`")] = None,
) -> None:
    """Publish one snapshot to pim.snapshots from a JSON file."""
    from hub.kafka import make_producer, produce_sync
    from schemas import topics
    from schemas.serde import Serde
    from services.mutator.core.entities import entity_key
    from services.mutator.core.errors import InvalidSnapshot

    settings = _settings()
    _need_bootstrap(settings)
    try:
        payload = orjson.loads(file.read_bytes())
        key = entity_key(entity_type, payload)
    except (OSError, orjson.JSONDecodeError, InvalidSnapshot) as exc:
        raise _fail(f"{file}: {exc}") from exc
    record = snapshot_record(
        entity_type, key, None if delete else payload, version or payload.get("updated"), "external"
    )
    msg = produce_sync(
        make_producer(settings),
        topics.SNAPSHOTS,
        Serde(settings.schema_registry_url).encode("Snapshot", record, topic=topics.SNAPSHOTS),
        key=key,
    )
    typer.echo(f"published {key} to {topics.SNAPSHOTS}[{msg.partition()}]@{msg.offset()}")


def snapshot_record(
    entity_type: str,
    key: str,
    payload: dict[str, Any] | None,
    version: str | None,
    origin: str,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A Snapshot record ready for the serde."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "entity_type": entity_type,
        "entity_key": key,
        "source_version": version,
        "origin": origin,
        "payload": orjson.dumps(payload).decode() if payload is not None else None,
        "delta": None,
        "received_at": datetime.now(UTC),
        "correlation_id": None,
    }


@app.command()
def deliveries(
    status: Annotated[str | None, typer.Option()] = None,
    integration: Annotated[str | None, typer.Option()] = None,
    entity: Annotated[str | None, typer.Option(help="entity key")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """Latest status per job, from the PostgreSQL projection."""
    import psycopg
    from psycopg.rows import dict_row

    settings = _settings()
    where, params = [], []
    for col, val in (("status", status), ("integration_id", integration), ("entity_key", entity)):
        if val:
            where.append(f"{col} = %s")
            params.append(val)
    sql = "SELECT * FROM deliveries"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY occurred_at DESC LIMIT %s"
    with psycopg.connect(_need_db(settings), row_factory=dict_row) as conn:
        rows = conn.execute(sql, [*params, limit]).fetchall()
    for r in rows:
        err = f"  {r['error_kind']}: {r['error_message']}" if r["error_message"] else ""
        typer.echo(
            f"{r['occurred_at']:%Y-%m-%d %H:%M:%S} {r['status']:9} {r['integration_id']:16} "
            f"{r['entity_key']:40} attempt {r['attempt']}{err}"
        )


@app.command()
def demo(
    keep_logs: Annotated[bool, typer.Option(help="print where the service logs are")] = True,
) -> None:
    """Run the main job on embedded defaults and show each stage."""
    from hub.demo import run_demo

    logs.configure("WARNING", "text")
    raise typer.Exit(run_demo(show_logs=keep_logs))


if __name__ == "__main__":  # pragma: no cover
    app()
