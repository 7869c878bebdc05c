"""Operator commands: `hub replay`, `hub resync`, `hub trace`, `hub offsets` and `hub health`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from pim_hub.runtime.entry import fail as _fail
from pim_hub.runtime.entry import load_settings as _settings
from pim_hub.runtime.entry import need_bootstrap as _need_bootstrap
from pim_hub.runtime.entry import need_db as _need_db
from pim_hub.schemas.limits import escape_controls

if TYPE_CHECKING:
    from pim_hub.runtime.settings import Settings


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (UTC when no offset) or a relative age like `90m`, `2h`, `7d` before now.

    Raises:
        typer.BadParameter: neither form.
    """
    from pim_hub.ops.when import parse_when as parse

    try:
        return parse(text, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _ready(need_db: bool = True) -> Settings:

    settings = _settings()
    _need_bootstrap(settings)
    if need_db:
        _need_db(settings)
    return settings


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


class _Bar:
    """A rich progress bar on stderr (stdout keeps the report)."""

    def __init__(self, label: str, progress: Any) -> None:
        self.label = label
        self.progress = progress
        self.task: Any = None

    def start(self, total: int) -> None:
        self.task = self.progress.add_task(self.label, total=max(total, 1))

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def describe(self, text: str) -> None:
        """Show what is being done now after the label."""
        if self.task is not None:
            self.progress.update(self.task, description=f"{self.label}: {text}")


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[_Bar | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from pim_hub.runtime.logs import to_current_stderr

    with (
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress,
        to_current_stderr(),
    ):
        yield _Bar(label, progress)


def _filter(entity_type: list[str] | None, key: str | None) -> Any:
    from pim_hub.ops.replay import EntityFilter
    from pim_hub.schemas.entities import ENTITY_TYPES

    unknown = sorted(set(entity_type or []) - ENTITY_TYPES)
    if unknown:
        raise _fail(
            f"unknown entity type(s) {', '.join(unknown)}; known: {', '.join(sorted(ENTITY_TYPES))}"
        )
    return EntityFilter(frozenset(entity_type) if entity_type else None, key)


#: `--priority`'s default: pim_hub.ops.dispatchers.BULK_PRIORITY (not imported: the CLI starts
#: without loading the ops modules; a unit test keeps the two equal).
BULK_PRIORITY = "low"

_PRIORITY_HELP = (
    "the priority (lane) of every job: low (default), which keeps the bulk of a {what} off the"
    " live lanes; keep: the priority fan-out gives each job, as live; or a priority of the"
    " queue map"
)


def _lanes(priority: str) -> str:
    """For progress labels: where the jobs go."""
    return "fan-out's priorities" if priority == "keep" else priority


def replay(
    integration: Annotated[
        list[str] | None,
        typer.Option("--integration", "-i", help="integration id (repeat); default every enabled"),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="guarded: the version guard sends only what the target lacks; force: re-push"
        ),
    ] = "guarded",
    since: Annotated[
        str | None, typer.Option(help="from this time (ISO 8601 or an age: 90m, 2h, 7d)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="before this time (same forms)")] = None,
    from_offset: Annotated[
        list[str] | None, typer.Option("--from-offset", help="N or PARTITION:N (repeat)")
    ] = None,
    to_offset: Annotated[
        list[str] | None,
        typer.Option("--to-offset", help="stop before N, or PARTITION:N (repeat)"),
    ] = None,
    entity_type: Annotated[
        list[str] | None, typer.Option("--entity-type", "-t", help="entity type (repeat)")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", "-k", help="glob on the entity key, e.g. 'product:*'")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count jobs per integration and priority only")
    ] = False,
    rate: Annotated[
        float, typer.Option(help="at most this many jobs per second (0: no limit)")
    ] = 0.0,
    priority: Annotated[
        str, typer.Option("--priority", help=_PRIORITY_HELP.format(what="replay"))
    ] = BULK_PRIORITY,
    run_id: Annotated[
        str | None, typer.Option(help="repeat an interrupted run with the same job ids")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Read hub.mutations again (by time or offsets) and fan it out as replay jobs."""
    from pim_hub.ops.replay import ReplayError, ReplayOptions
    from pim_hub.ops.replay import replay as run_replay
    from pim_hub.runtime.logread import OffsetsError, ReadStalled

    if mode not in ("guarded", "force"):
        raise _fail(f"--mode {mode!r}: use guarded or force")
    if rate < 0:
        raise _fail("--rate must not be negative")
    options = ReplayOptions(
        integrations=tuple(integration or ()),
        mode=mode,  # type: ignore[arg-type]
        since=parse_when(since) if since else None,
        until=parse_when(until) if until else None,
        from_offsets=tuple(from_offset or ()),
        to_offsets=tuple(to_offset or ()),
        filter=_filter(entity_type, key),
        dry_run=dry_run,
        rate=rate,
        run_id=run_id,
        priority=priority,
    )
    settings = _ready()
    label = f"reading hub.mutations (jobs on {_lanes(priority)})"
    try:
        with _progress(label, progress and not as_json) as bar:
            report = run_replay(settings, options, bar)
    except ReadStalled as exc:  # the broker stopped answering: a runtime failure
        raise _fail(str(exc), 1) from exc
    except (ReplayError, OffsetsError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    _report(report, as_json)


def _report(report: Any, as_json: bool) -> None:
    if as_json:
        _print_json(report.as_json())
    else:
        for line in report.lines():
            typer.echo(escape_controls(line))
    if report.invalid:
        raise typer.Exit(1)


def resync(
    integration: Annotated[
        str, typer.Option("--integration", "-i", help="the integration to fill")
    ],
    entity_type: Annotated[
        list[str] | None, typer.Option("--entity-type", "-t", help="only this type (repeat)")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", "-k", help="glob on the entity key")] = None,
    source: Annotated[
        str,
        typer.Option(help="auto (entity model when up to date, else the log), model or log"),
    ] = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count jobs only")] = False,
    rate: Annotated[
        float, typer.Option(help="at most this many jobs per second (0: no limit)")
    ] = 0.0,
    priority: Annotated[
        str, typer.Option("--priority", help=_PRIORITY_HELP.format(what="resync"))
    ] = BULK_PRIORITY,
    run_id: Annotated[str | None, typer.Option(help="repeat an interrupted run")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Push the current full state of every entity (or some types) to one integration."""
    from pim_hub.ops.replay import ReplayError
    from pim_hub.ops.resync import resync as run_resync
    from pim_hub.runtime.logread import OffsetsError, ReadStalled

    if source not in ("auto", "model", "log"):
        raise _fail(f"--source {source!r}: use auto, model or log")
    if rate < 0:
        raise _fail("--rate must not be negative")
    flt = _filter(entity_type, key)
    settings = _ready()
    try:
        label = f"resync to {integration} (jobs on {_lanes(priority)})"
        with _progress(label, progress and not as_json) as bar:
            report = run_resync(
                settings,
                integration,
                flt,
                source=source,  # type: ignore[arg-type]
                dry_run=dry_run,
                rate=rate,
                run_id=run_id,
                progress=bar,
                priority=priority,
            )
    except ReadStalled as exc:  # the broker stopped answering: a runtime failure
        raise _fail(str(exc), 1) from exc
    except (ReplayError, OffsetsError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    _report(report, as_json)


def trace(
    entity: Annotated[
        str, typer.Argument(help="entity key (product:<uuid>), product uuid, SKU or code")
    ],
    since: Annotated[
        str | None, typer.Option(help="only records from this time (ISO 8601 or 2h, 7d)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable timeline")] = False,
    changes: Annotated[bool, typer.Option(help="list each mutation's changes")] = True,
) -> None:
    """The timeline of one entity: raw event, snapshot, mutation, jobs, delivery statuses."""
    from pim_hub.ops.trace import TraceError, collect, render
    from pim_hub.runtime.logread import OffsetsError, ReadStalled

    settings = _ready(need_db=False)
    try:
        result = collect(settings, entity, parse_when(since) if since else None)
    except ReadStalled as exc:
        raise _fail(str(exc), 1) from exc
    except (TraceError, OffsetsError) as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        _print_json(result.as_json())
        return
    for line in render(result, changes):
        # Keys, values and errors come from outside: CR, LF and ESC are shown escaped.
        typer.echo(escape_controls(line))


def offsets(
    group: Annotated[
        str, typer.Argument(help="consumer group id, e.g. hub.dispatch.webhook.normal")
    ],
    topic: Annotated[
        list[str] | None, typer.Option("--topic", help="topic (repeat); default the group's")
    ] = None,
    partition: Annotated[
        list[int] | None, typer.Option("--partition", help="only this partition (repeat)")
    ] = None,
    reset: Annotated[
        str | None, typer.Option(help="earliest or latest (preview; apply with --execute)")
    ] = None,
    to_datetime: Annotated[
        str | None,
        typer.Option("--to-datetime", help="reset to the first record at/after this time"),
    ] = None,
    to_offset: Annotated[
        int | None, typer.Option("--to-offset", help="reset every chosen partition to offset N")
    ] = None,
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="the same as --reset earliest (Kafka's name)")
    ] = False,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="the same as --reset latest (Kafka's name)")
    ] = False,
    shift_by: Annotated[
        int | None,
        typer.Option("--shift-by", help="move each committed offset by N (negative: back)"),
    ] = None,
    execute: Annotated[bool, typer.Option("--execute", help="apply the reset")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Committed offsets and lag of a group; reset them (preview, then --execute)."""
    from pim_hub.ops.offsets import (
        GroupActive,
        ResetTarget,
        describe_group,
        execute_reset,
        plan_reset,
    )
    from pim_hub.runtime.logread import OffsetsError, ReadStalled

    # kafka-consumer-groups' names, beside the hub's own.
    if to_earliest or to_latest:
        if reset is not None or (to_earliest and to_latest):
            raise _fail("give one of --reset, --to-earliest, --to-latest")
        reset = "earliest" if to_earliest else "latest"
    chosen = [x for x in (reset, to_datetime, to_offset, shift_by) if x is not None]
    if len(chosen) > 1:
        raise _fail(
            "give one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by"
        )
    if reset is not None and reset not in ("earliest", "latest"):
        raise _fail(f"--reset {reset!r}: use earliest or latest (or --to-datetime/--to-offset)")
    if to_offset is not None and to_offset < 0:
        raise _fail("--to-offset must not be negative")
    if execute and not chosen:
        raise _fail(
            "--execute needs a reset: --to-earliest, --to-latest, --to-datetime, --to-offset "
            "or --shift-by"
        )
    settings = _ready(need_db=False)
    try:
        if not chosen:
            view = describe_group(settings, group, topic or ())
            if partition:
                view.partitions = [p for p in view.partitions if p.partition in set(partition)]
            if as_json:
                _print_json(view.as_json())
                return
            _show_group(view)
            return
        if reset is not None:
            target = ResetTarget(reset)  # type: ignore[arg-type]
        elif to_datetime is not None:
            target = ResetTarget("datetime", when=parse_when(to_datetime))
        elif shift_by is not None:
            target = ResetTarget("shift", offset=shift_by)
        else:
            target = ResetTarget("offset", offset=to_offset)
        view, rows = plan_reset(settings, group, target, topic or (), partition or ())
        if as_json and not execute:
            _print_json({**view.as_json(), "reset": _rows_json(rows), "applied": False})
            return
        if not as_json:
            typer.echo(f"group {group}: {view.state.lower()}; reset to {target.describe()}")
            for r in rows:
                move = "" if r.change is None else f" ({r.change:+d})"
                cur = "-" if r.current is None else str(r.current)
                note = f"  {r.note}" if r.note else ""
                typer.echo(f"  {r.topic:28} [{r.partition:>3}] {cur:>10} → {r.new:<10}{move}{note}")
        if not execute:
            if view.active:
                typer.echo(
                    f"(preview; the group is {view.state.lower()}: stop its consumers first)"
                )
            else:
                typer.echo("(preview; add --execute to apply)")
            return
        execute_reset(settings, group, rows)
    except GroupActive as exc:
        raise _fail(f"refused: {exc}") from exc
    except ReadStalled as exc:
        raise _fail(str(exc), 1) from exc
    except OffsetsError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        _print_json({**view.as_json(), "reset": _rows_json(rows), "applied": True})
    else:
        typer.echo(f"applied: {len(rows)} partition(s) of group {group} moved")


def _rows_json(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "topic": r.topic,
            "partition": r.partition,
            "current": r.current,
            "new": r.new,
            "note": r.note,
        }
        for r in rows
    ]


def _show_group(view: Any) -> None:
    members = f", {view.members} member(s)" if view.members else ""
    typer.echo(f"group {view.group}: {view.state.lower()}{members}; total lag {view.total_lag}")
    if not view.partitions:
        typer.echo("  no committed offsets (name a topic with --topic to see its log)")
    for p in view.partitions:
        committed = "-" if p.committed is None else str(p.committed)
        typer.echo(
            f"  {p.topic:28} [{p.partition:>3}] committed {committed:>10}  end {p.end:>10}"
            f"  lag {p.lag}"
        )


def health(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="services' metrics ports: host:port or URL (default: HUB_METRICS_PORT)"
        ),
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option(
            help="also every target this Prometheus scrapes (e.g. http://prometheus:9090)"
        ),
    ] = None,
    job: Annotated[str | None, typer.Option(help="only Prometheus targets of this job")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable answers")] = False,
) -> None:
    """Liveness (/healthz) and readiness (/readyz) of hub services; exit 1 when one fails."""
    import httpx

    from pim_hub.ops.health import check_all, render
    from pim_hub.runtime.metrics import MetricsSettings

    chosen = list(targets or [])
    if not chosen and not prometheus:
        chosen = [f"127.0.0.1:{MetricsSettings().metrics_port or 9100}"]
    try:
        results = check_all(chosen, prometheus, job)
    except httpx.HTTPError as exc:
        raise _fail(f"cannot read the targets of {prometheus}: {exc}") from exc
    if as_json:
        _print_json([r.as_dict() for r in results])
    else:
        for line in render(results):
            typer.echo(line)
    if not results or not all(r.ok for r in results):
        raise typer.Exit(1)
