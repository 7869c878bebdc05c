"""Entry point for `python -m hub`."""

from hub.cli import app

app()
