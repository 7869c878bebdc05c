"""`hub dead ...`: list and redrive dead letters."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pim_hub.cli.output import Output, OutputOpt, emit
from pim_hub.runtime.entry import load_settings, need_bootstrap, need_db
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.limits import escape_controls

dead_app = typer.Typer(no_args_is_help=True, help="Dead letters (hub.jobs.dead): list, redrive.")


def _settings() -> Settings:
    settings = load_settings()
    need_bootstrap(settings)
    need_db(settings)
    return settings


@dead_app.command("list")
def dead_list(
    integration: Annotated[str | None, typer.Option(help="only this integration")] = None,
    reason: Annotated[
        str | None, typer.Option(help="error kind (e.g. http_422) or text in the reason")
    ] = None,
    output: OutputOpt = Output.table,
    progress: Annotated[bool, typer.Option(help="show a progress bar (stderr)")] = True,
) -> None:
    """Dead letters not yet redriven, with their reason."""
    from pim_hub.cli.ops import _progress
    from pim_hub.ops.dead import list_dead

    settings = _settings()
    with _progress("reading hub.jobs.dead", progress) as bar:
        letters = list_dead(settings, integration, reason, bar)
    rows = []
    for d in letters:
        job = d.job or {}
        mutation = job.get("mutation") or {}
        rows.append(
            {
                "id": f"{d.partition}:{d.offset}",
                "job_id": d.job_id,
                "integration_id": d.integration_id,
                "priority": job.get("priority"),
                "entity_key": mutation.get("entity_key"),
                "operation": mutation.get("operation"),
                "attempt": job.get("attempt"),
                "kind": d.kind,
                "reason": d.reason,
            }
        )

    def line(r: Any) -> str:
        # Keys and reasons come from outside: control characters are shown escaped.
        return escape_controls(
            f"{r['id']:10} {r['job_id'] or '(undecodable)':36} {r['integration_id'] or '?':16} "
            f"{r['priority'] or '?':9} {r['operation'] or '?':6} {r['entity_key'] or '?':40} "
            f"{r['kind']}: {r['reason']}"
        )

    emit(rows, output, line)
    if output is Output.table:
        typer.echo(f"{len(letters)} dead letter(s)", err=True)


@dead_app.command("redrive")
def dead_redrive(
    job: Annotated[list[str] | None, typer.Option("--job", help="a job id (repeatable)")] = None,
    integration: Annotated[str | None, typer.Option(help="every dead job of it")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every dead job")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar (stderr)")] = True,
) -> None:
    """Send dead jobs back to their priority topic with attempts reset (once each)."""
    from pim_hub.cli.ops import _progress
    from pim_hub.ops.dead import redrive

    if not (job or integration or all_):
        typer.secho("error: give --job ID..., --integration X or --all", fg="red", err=True)
        raise typer.Exit(2)
    settings = _settings()
    try:
        with _progress("reading hub.jobs.dead", progress) as bar:
            report = redrive(
                settings, job_ids=job, integration=integration, everything=all_, progress=bar
            )
    except RuntimeError as exc:  # the broker did not take the jobs: nothing was redriven
        typer.secho(f"error: {exc} (nothing was redriven)", fg="red", err=True)
        raise typer.Exit(1) from exc
    for job_id in report.redriven:
        typer.echo(f"redriven {escape_controls(job_id)}")
    typer.echo(
        f"{len(report.redriven)} redriven, {report.already} redriven before, "
        f"{report.duplicates} duplicate dead letters, {report.undecodable} undecodable"
    )
    if report.missing:
        typer.secho(f"not found: {', '.join(report.missing)}", fg="yellow", err=True)
        raise typer.Exit(1)
