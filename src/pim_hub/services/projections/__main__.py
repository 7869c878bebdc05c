"""`python -m pim_hub.services.projections deliveries|entities`: one projector."""

import typer

from pim_hub.services.projections.cli import deliveries, entities

app = typer.Typer(no_args_is_help=True, help="The read-model projectors.")
app.command("deliveries")(deliveries)
app.command("entities")(entities)
app()
