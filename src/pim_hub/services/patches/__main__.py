"""`python -m pim_hub.services.patches`: the patch service."""

import typer

from pim_hub.services.patches.cli import patches

typer.run(patches)
