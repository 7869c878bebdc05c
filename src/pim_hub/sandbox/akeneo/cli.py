"""`hub sandbox akeneo`: serve the Akeneo sandbox."""

from __future__ import annotations

import typer
import uvicorn

from pim_hub.sandbox.akeneo.app import FaultConfig, create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue

app = typer.Typer(help="Akeneo PIM sandbox (simulated REST API over a generated catalogue).")


@app.callback()
def main() -> None:
    """Akeneo PIM sandbox."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8081, help="TCP port."),
    products: int = typer.Option(1000, min=0, max=100_000, help="Catalogue size."),
    seed: int = typer.Option(42, help="Catalogue seed (same seed, same catalogue)."),
    client_id: str = typer.Option("sandbox_client", help="Connection client id."),
    secret: str = typer.Option("sandbox_secret", help="Connection secret."),
    username: str = typer.Option("sandbox_api", help="API user name."),
    password: str = typer.Option("sandbox_password", help="API user password."),
    token_lifetime: float = typer.Option(3600.0, help="Access token lifetime in seconds."),
    rate_429: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of requests answered 429."),
    retry_after: int = typer.Option(1, min=0, help="Retry-After seconds on 429."),
    rate_5xx: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of requests answered 5xx."),
    status_5xx: int = typer.Option(500, min=500, max=599, help="Status used for 5xx faults."),
    latency_ms: float = typer.Option(0.0, min=0.0, help="Latency added to each API request."),
    max_concurrency: int = typer.Option(0, min=0, help="429 above this many in flight (0: off)."),
    prerender: bool = typer.Option(
        False, help="Render every product before listening: pages cost a copy (benchmarks)."
    ),
) -> None:
    """Serve the simulated Akeneo REST API until interrupted."""
    faults = FaultConfig(
        rate_429=rate_429,
        retry_after=retry_after,
        rate_5xx=rate_5xx,
        status_5xx=status_5xx,
        latency=latency_ms / 1000,
        max_concurrency=max_concurrency or None,
        seed=seed,
    )
    asgi = create_app(
        Catalogue(products, seed),
        client_id=client_id,
        secret=secret,
        username=username,
        password=password,
        faults=faults,
        token_lifetime=token_lifetime,
        prerender=prerender,
        base_url=f"http://{host}:{port}",
    )
    typer.echo(f"Akeneo sandbox: {products} products (seed {seed}) on http://{host}:{port}")
    uvicorn.run(asgi, host=host, port=port, log_level="warning")


@app.command()
def emit(
    to: str = typer.Option(..., help="Webhook URL of the receiver."),
    secret: str = typer.Option(..., help="Subscription secret (Event Platform: primary)."),
    sandbox: str = typer.Option("http://127.0.0.1:8081", help="URL of the running sandbox."),
    kind: str = typer.Option("events-api", help="events-api or event-platform."),
    count: int = typer.Option(10, min=1, max=1000, help="Number of random edits."),
    delta: bool = typer.Option(False, help="Event Platform: send updates as *.updated.delta."),
    secondary_secret: str | None = typer.Option(None, help="Event Platform secondary secret."),
    seed: int | None = typer.Option(None, help="Seed of the random edits."),
) -> None:
    """Make random edits in a running sandbox and have it send their signed webhooks."""
    import httpx

    from pim_hub.sandbox.akeneo.control import EMIT_PATH

    body = {
        "url": to,
        "kind": kind,
        "secret": secret,
        "secondary_secret": secondary_secret,
        "count": count,
        "delta": delta,
        "seed": seed,
    }
    resp = httpx.post(f"{sandbox.rstrip('/')}{EMIT_PATH}", json=body, timeout=120)
    if resp.status_code != 200:
        typer.secho(f"error: {resp.text}", fg="red", err=True)
        raise typer.Exit(2)
    result = resp.json()
    typer.echo(f"{len(result['edits'])} edits, {result['requests']} requests: {result['statuses']}")
