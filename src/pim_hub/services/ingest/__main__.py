"""`python -m pim_hub.services.ingest web|enrich|sync-akeneo`: one ingest service."""

import typer

from pim_hub.services.ingest.cli import enrich, sync_akeneo, web

app = typer.Typer(no_args_is_help=True, help="Akeneo webhooks, the enricher and the REST sync.")
app.command("web")(web)
app.command("enrich")(enrich)
app.command("sync-akeneo")(sync_akeneo)
app()
