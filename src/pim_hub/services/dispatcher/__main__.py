"""`python -m pim_hub.services.dispatcher`: one dispatcher (see `hub dispatcher --help`)."""

import typer

from pim_hub.services.dispatcher.cli import dispatcher

typer.run(dispatcher)
