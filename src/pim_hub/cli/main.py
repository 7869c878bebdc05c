"""The `hub` command line: one tool for everything a person does with the hub.

Commands are listed here by name, section and help line, and their modules are imported only
when one runs (`pim_hub.cli.lazy`), so `hub --help` and every command start quickly. Command
groups of other packages (the local development stack) come from the entry point group
`pim_hub.commands`, so the product never imports them; a group whose package or extra is
missing is shown with the command that installs it.

Exit codes, for every command: 0 success; 1 a runtime failure (broker or database errors,
a check that found problems, records not found for a redrive); 2 a usage error or bad input
(unknown option, missing setting, a file or payload that is not valid).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from typer._click.core import Command, Context
from typer.core import TyperCommand

from pim_hub.cli.lazy import Lazy, LazyGroup

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

#: The entry point group of command groups from other packages.
COMMANDS_GROUP = "pim_hub.commands"

#: Sections of `hub --help`.
RUN, OPERATE, SET_UP, DEVELOP = "Run", "Operate", "Set up", "Develop"

COMMANDS: list[Lazy] = [
    # Run: the services, each its own process and consumer group.
    Lazy(
        "run",
        "pim_hub.cli.run:run",
        RUN,
        "Run every service and the dispatchers the integrations need, supervised.",
    ),
    Lazy(
        "ingest", "pim_hub.services.ingest.cli:ingest_app", RUN, "Akeneo webhooks and the enricher."
    ),
    Lazy("sync", "pim_hub.services.ingest.cli:sync_app", RUN, "REST sync from a source system."),
    Lazy(
        "mutator",
        "pim_hub.services.mutator.cli:mutator",
        RUN,
        "Run the mutator (snapshots → mutations → jobs); scale by starting more.",
    ),
    Lazy(
        "dispatcher",
        "pim_hub.services.dispatcher.cli:dispatcher",
        RUN,
        "Run the consumer group hub.dispatch.<driver>.<priority>.",
    ),
    Lazy(
        "projector",
        "pim_hub.services.projections.cli:deliveries",
        RUN,
        "Project delivery statuses into PostgreSQL (the `hub deliveries` view).",
    ),
    Lazy(
        "patches",
        "pim_hub.services.patches.cli:patches",
        RUN,
        "Run the patch service: producers' partial updates by SKU or code.",
    ),
    Lazy(
        "exporter",
        "pim_hub.ops.exporter:exporter",
        RUN,
        "Serve consumer lag and missing dispatchers on /metrics.",
    ),
    # Operate: look at what happened, repair, replay.
    Lazy(
        "deliveries",
        "pim_hub.cli.basics:deliveries",
        OPERATE,
        "Latest status per job, from the PostgreSQL projection.",
    ),
    Lazy(
        "dead", "pim_hub.cli.dead:dead_app", OPERATE, "Dead letters (hub.jobs.dead): list, redrive."
    ),
    Lazy(
        "invalid",
        "pim_hub.cli.invalid:invalid_app",
        OPERATE,
        "Refused snapshots and events (pim.snapshots.invalid): list, show, redrive.",
    ),
    Lazy(
        "trace",
        "pim_hub.cli.ops:trace",
        OPERATE,
        "One entity's history: raw event → snapshot → mutation → jobs → statuses.",
    ),
    Lazy(
        "entities",
        "pim_hub.cli.entities:entities_app",
        OPERATE,
        "The local model: latest state of every entity (PostgreSQL).",
    ),
    Lazy(
        "replay",
        "pim_hub.cli.ops:replay",
        OPERATE,
        "Fan the mutation log out again as replay jobs (a time or offset range).",
    ),
    Lazy("resync", "pim_hub.cli.ops:resync", OPERATE, "Send the full state to an integration."),
    Lazy(
        "offsets",
        "pim_hub.cli.ops:offsets",
        OPERATE,
        "Show a consumer group's offsets; preview or apply a reset.",
    ),
    Lazy(
        "health",
        "pim_hub.cli.ops:health",
        OPERATE,
        "Ask services whether they are live (/healthz) and ready (/readyz).",
    ),
    # Set up: the installation.
    Lazy(
        "integrations",
        "pim_hub.cli.integrations:registry_app",
        SET_UP,
        "Integrations (targets): add, list, show, apply; the dispatchers they need.",
    ),
    Lazy("drivers", "pim_hub.cli.integrations:drivers_app", SET_UP, "Installed drivers."),
    Lazy("topics", "pim_hub.cli.basics:topics_app", SET_UP, "Kafka topics of the hub."),
    Lazy("db", "pim_hub.cli.basics:db_app", SET_UP, "PostgreSQL schema."),
    Lazy(
        "doctor",
        "pim_hub.cli.basics:doctor",
        SET_UP,
        "Check the Kafka cluster for the hub: connection, auth, topics, ACLs, size limits.",
    ),
    Lazy(
        "schemas",
        "pim_hub.cli.schemas:schemas_app",
        SET_UP,
        "Avro schemas: compatibility check; register with a Schema Registry.",
    ),
    # Develop: by hand and locally.
    Lazy("produce", "pim_hub.cli.basics:produce_app", DEVELOP, "Publish records by hand."),
    Lazy(
        "diff",
        "pim_hub.cli.entities:diff",
        DEVELOP,
        "Print the mutation the hub would emit for two payloads.",
    ),
]

#: Help lines of the local stack's commands (their module is slow to import).
PLUGIN_HELP = {
    "console": "Serve the operations console (web pages over the hub); hash a password.",
    "up": "Start an embedded broker and PostgreSQL; print the exports.",
    "demo": "Run the main job on embedded defaults and show each stage.",
    "sandbox": "Akeneo and Magento API simulators.",
}


def entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of a group.

    importlib.metadata is imported here, not with the module: it costs a fifth of
    `hub --help`'s start-up, and only the listing and the plugins need it.
    """
    from importlib.metadata import entry_points as installed

    return list(installed(group=group))


#: Plugins that belong to another section than Develop.
PLUGIN_SECTIONS = {"console": OPERATE}


def package_version() -> str:
    """The installed distribution's version (the package metadata, not a constant)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pim-hub")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"pim-hub {package_version()}")
        raise typer.Exit()


def _explain_command(name: str, extras: list[str], error: str) -> Command:
    """A stand-in command that says what to install instead of crashing the whole CLI."""
    what = f"pim-hub[{','.join(extras)}]" if extras else "pim-hub"

    def explain() -> None:
        typer.secho(
            f"error: `hub {name}` is not installed ({error}); install it with: pip install "
            f"'{what}'",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)

    return TyperCommand(
        name,
        callback=explain,
        help=f"(not installed: pip install '{what}')",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )


class HubGroup(LazyGroup):
    """The root group of `hub`."""

    lazy = {entry.name: entry for entry in COMMANDS}
    explain = staticmethod(lambda ep, why: _explain_command(ep.name, list(ep.extras), why))

    def list_commands(self, ctx: Context) -> list[str]:
        """The table's commands, then the plugins found now (entry points are cheap to list)."""
        type(self).plugins = {
            ep.name: (
                ep,
                PLUGIN_SECTIONS.get(ep.name, DEVELOP),
                PLUGIN_HELP.get(ep.name, f"(from {ep.value})"),
            )
            for ep in entry_points(group=COMMANDS_GROUP)
        }
        return super().list_commands(ctx)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """Plugins are looked up on first use too (list_commands may not have run)."""
        if cmd_name not in self.lazy and cmd_name not in self.plugins:
            self.list_commands(ctx)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=HubGroup,
    no_args_is_help=True,
    help="pim-hub: Akeneo PIM to commerce targets over Kafka. Exit codes: 0 ok, 1 runtime "
    "failure, 2 usage error or bad input. Listing commands take --output table|json|jsonl.",
)


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


@app.command(rich_help_panel=DEVELOP)
def version() -> None:
    """Print the version (the same as `hub --version`)."""
    typer.echo(f"pim-hub {package_version()}")


def mount_plugins(target: typer.Typer) -> None:
    """Mount every command registered under `pim_hub.commands` on a Typer app, eagerly
    (the `hub` group itself loads them on use)."""
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            register = ep.load()
        except ImportError as exc:
            _not_installed(target, ep, exc)
            continue
        register(target)


def _not_installed(target: typer.Typer, ep: EntryPoint, error: ImportError) -> None:
    what = f"pim-hub[{','.join(ep.extras)}]" if ep.extras else "pim-hub"

    @target.command(
        ep.name,
        help=f"(not installed: pip install '{what}')",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def _explain() -> None:
        typer.secho(
            f"error: `hub {ep.name}` is not installed ({error}); install it with: pip install "
            f"'{what}'",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)


if __name__ == "__main__":  # pragma: no cover
    app()
