"""`hub console` (serve the operations console), `hub console add-user` and
`hub console hash-password`.

Registered through the `pim_hub.commands` entry point; importing this module needs the
`console` extra, which is what tells the CLI to show `hub console` as not installed (and
which extra to install) when it is missing.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from importlib.util import find_spec
from typing import Annotated

import typer

#: The packages of the `console` extra, looked up rather than imported (`hub --help` stays quick).
CONSOLE_PACKAGES = ("jinja2", "multipart", "itsdangerous")
_missing = [name for name in CONSOLE_PACKAGES if find_spec(name) is None]
if _missing:
    raise ImportError(f"missing {', '.join(_missing)}")

console_app = typer.Typer(
    help="The operations console: a web application over the hub (pages, redrive, replay).",
    invoke_without_command=True,
)


@console_app.callback()
def console(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="address to listen on (HUB_CONSOLE_HOST, 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to listen on (HUB_CONSOLE_PORT, 8095)")
    ] = None,
) -> None:
    """Serve the console. Users come from HUB_CONSOLE_USERS (`hub console add-user`) and/or
    OIDC (HUB_CONSOLE_OIDC_*); without either it refuses to start."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from pim_hub.console.app import create_app
    from pim_hub.console.settings import ConsoleSettings
    from pim_hub.runtime import metrics
    from pim_hub.runtime.entry import fail, load_settings, need_bootstrap, need_db

    settings = load_settings()
    need_bootstrap(settings)
    need_db(settings)
    try:
        base = ConsoleSettings()
    except ValueError as exc:  # pydantic's ValidationError: a bad HUB_CONSOLE_USERS entry
        raise fail(f"console settings: {exc}") from exc
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    cfg = base.model_copy(update=overrides)
    if cfg.oidc_issuer and not cfg.oidc_client_id:
        raise fail("HUB_CONSOLE_OIDC_ISSUER is set without HUB_CONSOLE_OIDC_CLIENT_ID")
    if cfg.oidc_enabled:
        from pim_hub.console.oidc import OidcError, check_issuer

        try:
            check_issuer(str(cfg.oidc_issuer))
        except OidcError as exc:
            raise fail(str(exc)) from exc
    if not cfg.sign_in_configured:
        raise fail(
            "refusing to serve the console: no one could sign in. Add a user with "
            "`hub console add-user NAME --role operator` (it prints the value of "
            "HUB_CONSOLE_USERS to set), or configure OIDC sign-in (HUB_CONSOLE_OIDC_ISSUER and "
            "HUB_CONSOLE_OIDC_CLIENT_ID); see docs/console.md"
        )
    if cfg.secret_key is None:
        typer.secho(
            "warning: HUB_CONSOLE_SECRET_KEY is not set: sessions end when the console restarts",
            fg="yellow",
            err=True,
        )
    app = create_app(settings, cfg)
    # /metrics, /healthz and /readyz on HUB_METRICS_PORT like every service (`hub health`).
    metrics.start_from_env(
        "console", kafka=settings.kafka_config(), database_url=settings.database_url
    )
    who = f"{len(cfg.users)} user(s)"
    if cfg.oidc_enabled:
        who += f", OIDC sign-in with {cfg.oidc_issuer}"
    typer.echo(f"console on http://{cfg.host}:{cfg.port} ({who})")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", proxy_headers=True)


def _read_password(password_stdin: bool) -> str:
    """The password from standard input (one line) or asked twice on the terminal."""
    from pim_hub.runtime.entry import fail

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise fail("the passwords differ")
    if not password:
        raise fail("the password is empty")
    return password


@console_app.command("add-user")
def add_user_command(
    name: Annotated[str, typer.Argument(help="the user name to sign in with")],
    role: Annotated[
        str, typer.Option(help="viewer (sees every page) or operator (also acts)")
    ] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Print HUB_CONSOLE_USERS with this user added (or replaced): the current value of the
    variable, if any, plus the new entry with a scrypt hash of the password."""
    from pydantic import SecretStr, TypeAdapter, ValidationError

    from pim_hub.console.auth import hash_password
    from pim_hub.console.settings import ConsoleUser
    from pim_hub.runtime.entry import fail

    if role not in ("viewer", "operator"):
        raise fail(f"--role must be viewer or operator, not {role!r}")
    current = os.environ.get("HUB_CONSOLE_USERS", "").strip() or "[]"
    try:
        users = TypeAdapter(list[ConsoleUser]).validate_json(current)
    except ValidationError as exc:
        raise fail(f"HUB_CONSOLE_USERS as set now is not a valid users list: {exc}") from exc
    try:
        user = ConsoleUser(
            name=name,
            role=role,  # type: ignore[arg-type]  # checked above
            password_hash=SecretStr(hash_password(_read_password(password_stdin))),
        )
    except ValidationError as exc:
        raise fail(f"user: {exc}") from exc
    users = [u for u in users if u.name != name] + [user]
    entries = [
        {"name": u.name, "role": u.role, "password_hash": u.password_hash.get_secret_value()}
        for u in users
    ]
    typer.echo(json.dumps(entries))
    typer.echo(
        f"{len(entries)} user(s): set HUB_CONSOLE_USERS to the line above (a Secret in "
        "production) and restart the console",
        err=True,
    )


@console_app.command("hash-password")
def hash_password_command(
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Print the hash of a password for HUB_CONSOLE_USERS (the password is never stored)."""
    from pim_hub.console.auth import hash_password

    typer.echo(hash_password(_read_password(password_stdin)))


def register(app: typer.Typer) -> None:
    """Mount `hub console` (the entry point's target)."""
    app.add_typer(console_app, name="console")
