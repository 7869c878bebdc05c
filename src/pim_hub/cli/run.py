"""`hub run`: every service and the needed dispatchers, supervised, in one command."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from pim_hub.runtime.entry import fail, load_settings, need_bootstrap, need_db


def run(
    web: Annotated[
        bool, typer.Option("--web", help="also receive Akeneo webhooks (`hub ingest web`)")
    ] = False,
    port: Annotated[int, typer.Option(help="port of the webhook receiver (--web)")] = 8090,
    without: Annotated[
        list[str] | None,
        typer.Option(
            "--without",
            help="a service run elsewhere (repeat): enricher, mutator, projector, entities",
        ),
    ] = None,
    refresh: Annotated[
        float, typer.Option(help="seconds between looks at the integrations")
    ] = 10.0,
) -> None:
    """Run the enricher, the mutator, both projectors and exactly the dispatchers the enabled
    integrations need, on your Kafka and PostgreSQL (HUB_KAFKA_BOOTSTRAP, HUB_DATABASE_URL).

    A crashed service is started again; integrations added later get their dispatchers within
    --refresh seconds; a dispatcher needed while jobs wait is reported. Ctrl-C stops them all.
    """
    from pim_hub.ops.runall import BASE_SERVICES, WEB_SERVICE, RunAll

    settings = load_settings()
    need_bootstrap(settings)
    need_db(settings)
    services = dict(BASE_SERVICES)
    for name in without or []:
        if name not in services:
            raise fail(f"--without {name!r}: one of {', '.join(BASE_SERVICES)}")
        del services[name]
    if web:
        services[WEB_SERVICE] = ["ingest", "web", "--port", str(port)]
    if refresh <= 0:
        raise fail("--refresh must be positive")
    supervisor = RunAll(settings, services, refresh_s=refresh)

    def on_signal(*_: Any) -> None:
        supervisor.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor.run()
