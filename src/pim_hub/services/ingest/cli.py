"""`hub ingest web|enrich` and `hub sync akeneo`: the ingest services on the command line."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from pim_hub.runtime import health, logs, metrics
from pim_hub.runtime.settings import Settings
from pim_hub.services.ingest.settings import IngestSettings

ingest_app = typer.Typer(no_args_is_help=True, help="Akeneo webhooks and the enricher.")
sync_app = typer.Typer(no_args_is_help=True, help="REST sync from a source system.")


def _settings() -> tuple[Settings, IngestSettings]:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    if not (settings.kafka.bootstrap or settings.kafka_bootstrap):
        typer.secho("error: HUB_KAFKA_BOOTSTRAP is not set", fg="red", err=True)
        raise typer.Exit(2)
    return settings, IngestSettings()


@ingest_app.command("web")
def web(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8090,
) -> None:
    """Serve the webhook receiver (Events API and Event Platform endpoints)."""
    import uvicorn

    from pim_hub.services.ingest import server
    from pim_hub.services.ingest.web import EVENT_PLATFORM_PATH, EVENTS_API_PATH, kafka_app

    settings, ingest = _settings()
    metrics.start_from_env("ingest-web", kafka=settings.kafka_config())
    typer.echo(f"webhooks on http://{host}:{port}{EVENTS_API_PATH} and {EVENT_PLATFORM_PATH}")
    served = uvicorn.Server(server.config(kafka_app(settings, ingest), host, port, ingest))
    served.run()
    if not served.started:  # the port is taken, or the app did not start: as uvicorn.run
        raise typer.Exit(3)


@ingest_app.command("enrich")
def enrich() -> None:
    """Consume pim.raw-events and publish snapshots (consumer group hub.ingest.enricher)."""
    from pim_hub.services.ingest.akeneo import AkeneoClient
    from pim_hub.services.ingest.enricher import Enricher

    settings, ingest = _settings()
    metrics.start_from_env(
        "enricher",
        kafka=settings.kafka_config(),
        database_url=settings.database_url,
        group="hub.ingest.enricher",
    )

    async def main() -> None:
        async with AkeneoClient.from_settings(ingest) as client:
            enricher = Enricher(settings, ingest, client)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, enricher.stop)
            unwatch = health.watch_event_loop(loop)
            try:
                await enricher.run()
            finally:
                unwatch()

    asyncio.run(main())


@sync_app.command("akeneo")
def sync_akeneo(
    full: Annotated[bool, typer.Option("--full", help="read everything")] = False,
    delta: Annotated[
        bool, typer.Option("--delta", help="read what changed since last run")
    ] = False,
    entity: Annotated[
        list[str] | None, typer.Option("--entity", help="entity type (repeatable); default all")
    ] = None,
    progress: Annotated[
        bool,
        typer.Option(help="a bar per entity type on stderr (on a terminal; log lines otherwise)"),
    ] = True,
) -> None:
    """Publish Akeneo entities as snapshots; a crashed run resumes where it stopped."""
    from pim_hub.runtime.kafka import AsyncProducer, make_producer
    from pim_hub.runtime.tuning import quiet_gc
    from pim_hub.schemas.serde import Serde
    from pim_hub.services.ingest.akeneo import AkeneoClient, AkeneoError
    from pim_hub.services.ingest.sync import (
        ENTITY_TYPES,
        SyncRunner,
        WatermarkStore,
        default_progress,
    )

    if full == delta:
        typer.secho("error: give exactly one of --full or --delta", fg="red", err=True)
        raise typer.Exit(2)
    types = entity or list(ENTITY_TYPES)
    unknown = sorted(set(types) - set(ENTITY_TYPES))
    if unknown:
        typer.secho(
            f"error: unknown entity type(s) {', '.join(unknown)}; known: {', '.join(ENTITY_TYPES)}",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    settings, ingest = _settings()
    if not settings.database_url:
        typer.secho("error: HUB_DATABASE_URL is not set", fg="red", err=True)
        raise typer.Exit(2)
    metrics.start_from_env("sync")

    async def main() -> int:
        producer = AsyncProducer(make_producer(settings, **{"linger.ms": 20}))
        await producer.start()
        quiet_gc()
        store = WatermarkStore(settings.database_url or "", ingest.akeneo_url)
        try:
            async with AkeneoClient.from_settings(ingest) as client:
                runner = SyncRunner(
                    client,
                    producer,
                    Serde(settings.registry_config()),
                    store,
                    page_size=ingest.sync_page_size,
                    overlap_s=ingest.sync_overlap_s,
                    progress=default_progress(progress),
                    streams=ingest.sync_streams,
                    window=ingest.sync_window,
                    record_budget=settings.record_budget,
                )
                reports = await runner.run("full" if full else "delta", types)
        except AkeneoError as exc:
            typer.secho(f"error: {exc} (run again to resume)", fg="red", err=True)
            return 1
        finally:
            await producer.close()
            store.close()
        for r in reports:
            resumed = " (resumed)" if r.resumed else ""
            typer.echo(
                f"{r.entity_type:18} {r.published:>9} snapshots {r.invalid:>5} invalid "
                f"{r.seconds:7.1f}s{resumed}"
            )
        return 0

    raise typer.Exit(asyncio.run(main()))
