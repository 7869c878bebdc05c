"""Entry point for `python -m hub`."""

from pim_hub.cli.main import app

app()
