"""httpx clients that send through aiohttp's connection pool, and their error classes."""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from pim_hub.runtime.outbound import PolicyResolver, policy


async def _check_outbound(request: httpx.Request) -> None:
    # The URL's text (IP literals in any notation never reach the resolver); names are
    # checked on their addresses by the PolicyResolver when the connection is made.
    policy().check_url(str(request.url))


def async_client(
    *,
    timeout: float,
    max_connections: int,
    base_url: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
    outbound_policy: bool = True,
) -> httpx.AsyncClient:
    """An httpx client whose requests go through an aiohttp connection pool.

    httpx's own transport (httpcore and h11 over anyio) cost 0.8-1.9 ms of CPU per request
    here, more the more requests wait for its pool, which checks every connection for every
    waiting request. Through aiohttp's pool the same request costs about 0.4 ms, and a
    dispatcher is one event loop whose CPU is its rate. The API, the answers and the errors
    stay httpx's; `transport` replaces the pool (the tests' mock transports).

    With `outbound_policy` (the default: drivers' targets are data from the registry) every
    request passes the outgoing URL policy (pim_hub.runtime.outbound), on its URL and on the
    addresses its host resolves to; a refused one raises RefusedAddress before any byte is
    sent. Clients of operator-configured services (the Akeneo API) turn it off.
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_connections, keepalive_timeout=5.0, resolver=PolicyResolver()
            )
        )

    if transport is None:
        transport = AiohttpTransport(limits=limits, client=session if outbound_policy else None)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        limits=limits,
        transport=transport,
        event_hooks={"request": [_check_outbound]} if outbound_policy else None,
    )


def timed_out(exc: httpx.TransportError) -> bool:
    """Whether a transport error is a timeout rather than a refused or lost connection.

    The aiohttp transport reports every lost connection as `httpx.ConnectTimeout`, a
    refused one included; the aiohttp error it was raised from tells which it was.
    """
    if not isinstance(exc, httpx.TimeoutException):
        return False
    cause = exc.__cause__
    return cause is None or isinstance(cause, TimeoutError) or not _is_aiohttp(cause)


def _is_aiohttp(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("aiohttp")
