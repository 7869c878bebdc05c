"""`python -m pim_hub.services.mutator`: one mutator worker (see `hub mutator --help`)."""

import typer

from pim_hub.services.mutator.cli import mutator

typer.run(mutator)
