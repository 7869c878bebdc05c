"""A loopback HTTP receiver for the webhook driver's tests.

Every request it gets is checked against the webhook JSON Schema (tests.webhook_schema):
a request that does not match fails the test that sent it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from tests import webhook_schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve_hook(handler: Handler) -> tuple[web.AppRunner, str]:
    """Serve handler at POST /hook on a free loopback port: (runner to clean up, its URL)."""

    async def checked(request: web.Request) -> web.StreamResponse:
        # read() caches the body, so the handler can read it again.
        webhook_schema.record(request.headers, await request.read())
        return await handler(request)

    app = web.Application()
    app.router.add_post("/hook", checked)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"
