"""The `hub` command line: one tool for everything a person does with the hub.

Command groups of other packages (the local development stack) are mounted from the entry
point group `pim_hub.commands`, so the product never imports them; a group whose package or
extra is missing is shown with the command that installs it.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, entry_points
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Annotated

import orjson
import typer

from pim_hub.cli.dead import dead_app
from pim_hub.cli.entities import diff as diff_command
from pim_hub.cli.entities import entities_app
from pim_hub.cli.integrations import drivers_app, registry_app
from pim_hub.cli.ops import health, offsets, replay, resync, trace
from pim_hub.ops.exporter import exporter as exporter_command
from pim_hub.runtime.entry import fail as _fail
from pim_hub.runtime.entry import load_settings as _settings
from pim_hub.runtime.entry import need_bootstrap as _need_bootstrap
from pim_hub.runtime.entry import need_db as _need_db
from pim_hub.runtime.settings import Settings
from pim_hub.services.dispatcher.cli import dispatcher as dispatcher_command
from pim_hub.services.ingest.cli import ingest_app, sync_app
from pim_hub.services.mutator.cli import mutator as mutator_command
from pim_hub.services.projections.cli import deliveries as deliveries_projector

logger = logging.getLogger(__name__)

#: The entry point group of command groups from other packages.
COMMANDS_GROUP = "pim_hub.commands"


def package_version() -> str:
    """The installed distribution's version (the package metadata, not a constant)."""
    try:
        return dist_version("pim-hub")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"pim-hub {package_version()}")
        raise typer.Exit()


app = typer.Typer(no_args_is_help=True, help="pim-hub: Akeneo PIM to commerce targets over Kafka.")


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """pim-hub: Akeneo PIM to commerce targets over Kafka."""


topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the hub.")
db_app = typer.Typer(no_args_is_help=True, help="PostgreSQL schema.")
produce_app = typer.Typer(no_args_is_help=True, help="Publish records by hand.")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(registry_app, name="integrations")
app.add_typer(drivers_app, name="drivers")
app.add_typer(produce_app, name="produce")
app.add_typer(dead_app, name="dead")
app.add_typer(entities_app, name="entities")
app.add_typer(ingest_app, name="ingest")
app.add_typer(sync_app, name="sync")
app.command("replay")(replay)
app.command("resync")(resync)
app.command("trace")(trace)
app.command("offsets")(offsets)
app.command("health")(health)
app.command("exporter")(exporter_command)
app.command("diff")(diff_command)
app.command("mutator")(mutator_command)
app.command("dispatcher")(dispatcher_command)
app.command("projector")(deliveries_projector)


def _not_installed(target: typer.Typer, name: str, extras: list[str], error: ImportError) -> None:
    """A stand-in command that says what to install instead of crashing the whole CLI."""
    what = f"pim-hub[{','.join(extras)}]" if extras else "pim-hub"

    @target.command(
        name,
        help=f"(not installed: pip install '{what}')",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def _explain() -> None:
        raise _fail(
            f"`hub {name}` is not installed ({error}); install it with: pip install '{what}'"
        )


def mount_plugins(target: typer.Typer) -> None:
    """Mount every command registered under `pim_hub.commands` (entry point name: command)."""
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            register = ep.load()
        except ImportError as exc:
            _not_installed(target, ep.name, list(ep.extras), exc)
            continue
        register(target)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"pim-hub {package_version()}")


@topics_app.command("apply")
def topics_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only")] = False,
    profile: Annotated[
        str, typer.Option(help="default, or production: replication 3, min.insync.replicas 2")
    ] = "default",
) -> None:
    """Create missing topics and report (and fix) config drift; safe to run again."""
    from pim_hub.runtime.kafka import TOPIC_PROFILES, apply_topics

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
    from pim_hub.runtime.kafka import settings_catalogue

    for spec in settings_catalogue(Settings()):
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms / 86400000:g}d"
        typer.echo(
            f"{spec.name:28} partitions={spec.partitions:<3} retention={retention:<8} "
            f"cleanup={spec.cleanup_policy:<8} {spec.doc}"
        )


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

    settings = _settings()
    _need_bootstrap(settings)
    try:
        text = file.read_bytes()
        payload = orjson.loads(text)
        # The mutator's own limits, checked here so a bad file is refused with its reason
        # instead of published and set aside.
        check_json_text("the payload", text.decode(), payload)
        key = entity_key(entity_type, payload)
    except (OSError, orjson.JSONDecodeError, InvalidSnapshot, LimitExceeded) as exc:
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
    typer.echo(
        f"published {escape_controls(key)} to {topics.SNAPSHOTS}[{msg.partition()}]@{msg.offset()}"
    )


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


mount_plugins(app)


if __name__ == "__main__":  # pragma: no cover
    app()
