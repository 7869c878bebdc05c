"""httpx clients that send through aiohttp's connection pool, and their error classes."""

from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport


def async_client(
    *,
    timeout: float,
    max_connections: int,
    base_url: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose requests go through an aiohttp connection pool.

    httpx's own transport (httpcore and h11 over anyio) cost 0.8-1.9 ms of CPU per request
    here, more the more requests wait for its pool, which checks every connection for every
    waiting request. Through aiohttp's pool the same request costs about 0.4 ms, and a
    dispatcher is one event loop whose CPU is its rate. The API, the answers and the errors
    stay httpx's; `transport` replaces the pool (the tests' mock transports).
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        limits=limits,
        transport=transport or AiohttpTransport(limits=limits),
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
