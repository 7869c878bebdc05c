"""`hub schemas check|register`: the hub's Avro schemas, locally and against a registry."""

from __future__ import annotations

from typing import Annotated

import typer

from pim_hub.runtime.entry import fail as _fail
from pim_hub.runtime.entry import load_settings as _settings

schemas_app = typer.Typer(no_args_is_help=True, help="Avro schemas and the Schema Registry.")

LevelOption = Annotated[
    str,
    typer.Option(
        "--level",
        help="BACKWARD, FORWARD, FULL (each also _TRANSITIVE) or NONE",
    ),
]


def _level(value: str) -> str:
    from pim_hub.ops.schemas import LEVELS

    level = value.upper()
    if level not in LEVELS:
        raise _fail(f"unknown compatibility level {value!r}; known: {', '.join(LEVELS)}")
    return level


@schemas_app.command("check")
def check(
    level: LevelOption = "FULL_TRANSITIVE",
    local: Annotated[
        bool, typer.Option("--local", help="only the released versions, no registry")
    ] = False,
) -> None:
    """Check each event's schema against its released versions, then against the registry.

    Locally: the newest schema of every event against the earlier ones under --level. With
    HUB_SCHEMA_REGISTRY_URL set (and not --local): whether each topic's subject
    (`<topic>-value`) accepts the current schema under the subject's own level. Exits 1 on
    an incompatibility.
    """
    from typing import cast

    from pim_hub.ops.schemas import Level, avro_subjects, check_local, check_registry
    from pim_hub.schemas.serde import Registry

    report = check_local(cast(Level, _level(level)))
    lines, ok = list(report.lines), report.ok
    settings = _settings()
    conf = settings.registry_config()
    if conf is not None and not local:
        remote = check_registry(Registry(conf), avro_subjects(settings))
        lines += remote.lines
        ok = ok and remote.ok
    for line in lines:
        typer.echo(line)
    if not ok:
        raise typer.Exit(1)


@schemas_app.command("register")
def register_command(
    level: Annotated[
        str | None,
        typer.Option("--level", help="also set each subject's compatibility level"),
    ] = None,
) -> None:
    """Register every released version of the hub's schemas under each topic's subject.

    Idempotent; run it at deployment when the services only look schemas up
    (HUB_SCHEMA_REGISTRY_AUTO_REGISTER=false). Exits 1 when the registry refused one.
    """
    from typing import cast

    from pim_hub.ops.schemas import Level, avro_subjects, register
    from pim_hub.schemas.serde import Registry

    settings = _settings()
    conf = settings.registry_config()
    if conf is None:
        raise _fail("HUB_SCHEMA_REGISTRY_URL is not set")
    report = register(
        Registry(conf), avro_subjects(settings), cast(Level, _level(level)) if level else None
    )
    for line in report.lines:
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
