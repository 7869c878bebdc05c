"""What every entry point shares: settings from the environment, clear failures.

With the `__main__` modules and the CLI, the only place where a process reads its environment.
"""

from __future__ import annotations

import typer

from pim_hub.runtime import logs, outbound, sealing
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.limits import escape_controls


def load_settings() -> Settings:
    """The settings from HUB_* variables, with logging configured from them."""
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    configure_sealing(settings)
    try:
        outbound.configure(settings.outbound_allow)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    return settings


def configure_sealing(settings: Settings) -> None:
    """Use the settings' HUB_SECRETS_KEY for the secrets of integration configs.

    Raises:
        typer.Exit: the key is malformed (a clear message, exit code 2).
    """
    key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    try:
        sealing.configure(key)
    except sealing.SealingError as exc:
        raise fail(str(exc)) from exc


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error for people and return the exit to raise.

    Messages quote untrusted text (keys, file contents, server answers): control characters
    are shown escaped, so CR, LF or ESC cannot rewrite the terminal.
    """
    typer.secho(f"error: {escape_controls(message)}", fg="red", err=True)
    return typer.Exit(code)


def need_bootstrap(settings: Settings) -> None:
    """Stop with a clear message when no broker is configured."""
    if not (
        settings.kafka.bootstrap
        or settings.kafka_bootstrap
        or settings.kafka.merged().get("bootstrap.servers")
    ):
        raise fail("HUB_KAFKA_BOOTSTRAP is not set (start a local broker with `hub up`)")


def need_db(settings: Settings) -> str:
    """The database URL, or stop with a clear message."""
    if not settings.database_url:
        raise fail("HUB_DATABASE_URL is not set (`hub up` prints one)")
    return settings.database_url
