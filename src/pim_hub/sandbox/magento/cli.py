"""`hub sandbox magento`: serve the Magento sandbox over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from pim_hub.sandbox.magento.app import DEFAULT_TOKEN_LIFETIME, create_app
from pim_hub.sandbox.magento.config import SandboxConfig
from pim_hub.sandbox.magento.faults import FaultConfig
from pim_hub.sandbox.magento.spec import DEFAULT_SPEC_PATH
from pim_hub.sandbox.magento.state import MagentoState

app = typer.Typer(help="In-memory Magento 2.4 REST sandbox.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Magento sandbox commands."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8082,
    admin_user: Annotated[
        str, typer.Option(help="Admin username for the token endpoint.")
    ] = "admin",
    admin_password: Annotated[
        str, typer.Option(help="Admin password for the token endpoint.")
    ] = "admin123",  # noqa: S107 - the sandbox's documented demo login
    integration_token: Annotated[
        str | None, typer.Option(help="Integration access token accepted as a Bearer token.")
    ] = None,
    token_lifetime: Annotated[
        float, typer.Option(help="Admin token lifetime in seconds.")
    ] = DEFAULT_TOKEN_LIFETIME,
    spec_path: Annotated[
        Path, typer.Option(help="Magento admin Swagger document.")
    ] = DEFAULT_SPEC_PATH,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 5xx.")] = 0.0,
    error_status: Annotated[int, typer.Option(help="Status of injected errors.")] = 500,
    rate_limit_rate: Annotated[float, typer.Option(help="Share of requests answered 429.")] = 0.0,
    retry_after: Annotated[float, typer.Option(help="Retry-After seconds of 429s.")] = 1.0,
    latency: Annotated[float, typer.Option(help="Seconds added to each request.")] = 0.0,
    latency_jitter: Annotated[float, typer.Option(help="Up to this many extra seconds.")] = 0.0,
    bulk_failure_rate: Annotated[
        float, typer.Option(help="Share of bulk operations ending retriably failed (2).")
    ] = 0.0,
    bulk_delay: Annotated[
        float, typer.Option(help="Seconds a bulk operation stays open before it runs.")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
    auto_create_attributes: Annotated[
        bool, typer.Option(help="Create unknown attributes on their first option POST.")
    ] = False,
) -> None:
    """Serve the sandbox until interrupted."""
    state = MagentoState(
        SandboxConfig(bulk_delay=bulk_delay, auto_create_attributes=auto_create_attributes)
    )
    faults = FaultConfig(
        error_rate=error_rate,
        error_status=error_status,
        rate_limit_rate=rate_limit_rate,
        retry_after=retry_after,
        latency=latency,
        latency_jitter=latency_jitter,
        bulk_failure_rate=bulk_failure_rate,
        seed=seed,
    )
    asgi = create_app(
        state,
        spec_path=spec_path,
        admin_user=admin_user,
        admin_password=admin_password,
        integration_token=integration_token,
        admin_token_lifetime=token_lifetime,
        faults=faults,
    )
    typer.echo(f"Magento sandbox on http://{host}:{port}/rest/V1 (spec {spec_path})")
    uvicorn.run(asgi, host=host, port=port, log_level="info")
