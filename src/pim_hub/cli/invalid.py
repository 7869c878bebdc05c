"""`hub invalid list|show|redrive`: records the hub set aside (pim.snapshots.invalid)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from pim_hub.cli.output import Output, OutputOpt, emit
from pim_hub.runtime.entry import fail, load_settings, need_bootstrap
from pim_hub.runtime.settings import Settings

invalid_app = typer.Typer(
    no_args_is_help=True,
    help="Records the hub refused (pim.snapshots.invalid: snapshots, events and producers' "
    "patches), with their reasons: list, show, publish again after a fix; rows a projector "
    "set aside (rows).",
)


def _settings() -> Settings:
    settings = load_settings()
    need_bootstrap(settings)
    return settings


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise fail(f"--since {text!r}: give 30m, 2h, 7d or an ISO 8601 time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@invalid_app.command("list")
def invalid_list(
    key: Annotated[str | None, typer.Option(help="entity key glob, e.g. 'product:*'")] = None,
    error_type: Annotated[
        str | None, typer.Option(help="e.g. invalid_snapshot, invalid_patch")
    ] = None,
    since: Annotated[str | None, typer.Option(help="30m, 2h, 7d or an ISO 8601 time")] = None,
    limit: Annotated[int, typer.Option(help="the newest N (0: all)")] = 100,
    topic: Annotated[str | None, typer.Option(help="default pim.snapshots.invalid")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Set-aside records, oldest first, with why each was refused."""
    from pim_hub.ops import invalid
    from pim_hub.runtime.logread import OffsetsError

    settings = _settings()
    try:
        records = invalid.read(
            settings,
            topic or invalid.SET_ASIDE_TOPICS[0],
            key_glob=key,
            error_type=error_type,
            since=_since(since),
            limit=limit or None,
        )
    except OffsetsError as exc:
        raise fail(str(exc), 1) from exc

    def line(r: Any) -> str:
        reason = r["reason"].splitlines()[0] if r["reason"] else ""
        kind = f"{r['error_type']}/{r['code']}" if r["code"] else r["error_type"]
        return f"{r['id']:10} {r['at'][:19]} {r['key'] or '(no key)':44} {kind}: {reason[:160]}"

    count = emit((r.summary() for r in records), output, line)
    if output is Output.table:
        typer.echo(f"{count} record(s); `hub invalid show ID` shows one in full", err=True)


@invalid_app.command("show")
def invalid_show(
    record_id: Annotated[str, typer.Argument(metavar="ID", help="PARTITION:OFFSET")],
    topic: Annotated[str | None, typer.Option(help="default pim.snapshots.invalid")] = None,
) -> None:
    """One set-aside record in full (JSON): reason, headers, the snapshot or body."""
    from pim_hub.ops import invalid

    settings = _settings()
    try:
        record = invalid.get(settings, record_id, topic or invalid.SET_ASIDE_TOPICS[0])
    except invalid.InvalidRecordError as exc:
        raise fail(str(exc)) from exc
    typer.echo(json.dumps(record.detail(), indent=2, sort_keys=True, default=str))


@invalid_app.command("redrive")
def invalid_redrive(
    record_id: Annotated[str, typer.Argument(metavar="ID", help="PARTITION:OFFSET")],
    fixed: Annotated[
        Path | None,
        typer.Option(
            "--payload",
            help="the fixed entity as a JSON file (for a patch: its fixed values, the patch's "
            "`payload`); default: the record's",
        ),
    ] = None,
    entity_type: Annotated[
        str | None, typer.Option(help="when the record does not say (a sync resource)")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="source version; default the original's, else `updated`")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="default pim.snapshots.invalid")] = None,
) -> None:
    """Publish a set-aside record again, as a new snapshot on pim.snapshots.

    The payload (the record's own, or --payload after a fix) is checked with the mutator's
    rules first: when it would be refused again nothing is published (exit 2). A refused
    patch goes back to the patches topic it came from, after the patch service's own checks
    (source, field ownership, the entity known in the local model now).
    """
    import orjson

    from pim_hub.ops import invalid
    from pim_hub.runtime.kafka import DeliveryFailed

    settings = _settings()
    payload = None
    if fixed is not None:
        try:
            payload = orjson.loads(fixed.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise fail(f"{fixed}: {exc}") from exc
    try:
        record = invalid.get(settings, record_id, topic or invalid.SET_ASIDE_TOPICS[0])
        done = invalid.redrive(settings, record, payload, entity_type, version)
    except invalid.InvalidRecordError as exc:
        raise fail(str(exc)) from exc
    except DeliveryFailed as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(f"published {done.key} to {done.topic}[{done.partition}]@{done.offset}")


@invalid_app.command("rows")
def invalid_rows(
    stage: Annotated[
        str | None, typer.Option(help="e.g. projector.entities, projector.deliveries")
    ] = None,
    limit: Annotated[int, typer.Option(help="the newest N")] = 100,
    output: OutputOpt = Output.table,
) -> None:
    """Records a stage could not write to PostgreSQL and set aside (they stay on their topic),
    newest first, with the reason."""
    import psycopg

    from pim_hub.ops import invalid
    from pim_hub.runtime.entry import need_db

    settings = load_settings()
    try:
        rows = invalid.set_aside_rows(need_db(settings), stage, limit)
    except psycopg.Error as exc:
        raise fail(f"cannot read set_aside_records: {exc}", 1) from exc

    def line(r: Any) -> str:
        return (
            f"{r['recorded_at']:%Y-%m-%d %H:%M:%S} {r['stage']:22} "
            f"{r['topic']}[{r['partition']}]@{r['offset']} {r['record_key'] or '(no key)':40} "
            f"{r['reason']}: {r['message'][:160]}"
        )

    emit(rows, output, line)
