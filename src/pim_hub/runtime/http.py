"""httpx clients that send through aiohttp's connection pool, and their error classes; the
trace context on every outgoing request (`runtime.tracing`), for httpx and aiohttp clients."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

from pim_hub.runtime import tracing
from pim_hub.runtime.outbound import OutboundPolicy, policy

# Why here and not in runtime.outbound: the settings read the outbound policy's default, and
# every command loads the settings; aiohttp is imported only by what sends requests.


class PolicyResolver(ThreadedResolver):
    """aiohttp's resolver, keeping only the addresses the policy allows (checked per
    connection, so a name that later resolves elsewhere is checked again)."""

    def __init__(self, checked: OutboundPolicy | None = None) -> None:
        super().__init__()
        self._policy = checked

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The allowed addresses of host.

        Raises:
            RefusedAddress: a metadata name, or no allowed address.
        """
        active = self._policy or policy()
        active.check_host(host)
        records = await super().resolve(host, port, family)
        return active.filter_resolved(host, records)  # type: ignore[arg-type,return-value]


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
        transport=TracingTransport(transport),
        event_hooks={"request": [_check_outbound]} if outbound_policy else None,
    )


class TracingTransport(httpx.AsyncBaseTransport):
    """Sends the current trace context (`traceparent`) with each request, in a client span.

    Without tracing, or outside a record's work, the request goes as it is.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = tracing.outgoing(request.method, str(request.url))
        if started is None:
            return await self.inner.handle_async_request(request)
        span, headers = started
        for key, value in headers:
            request.headers[key] = tracing.text(value)
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException as exc:
            tracing.finish(span, error=exc)
            raise
        tracing.finish(span, status=response.status_code)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def trace_configs() -> list[aiohttp.TraceConfig]:
    """For an aiohttp session (`ClientSession(trace_configs=...)`): each request carries the
    current trace context, in a client span, like `async_client`'s."""
    config = aiohttp.TraceConfig()

    async def start(_: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        started = tracing.outgoing(params.method, str(params.url))
        ctx.span = None
        if started is not None:
            ctx.span, headers = started
            for key, value in headers:
                params.headers[key] = tracing.text(value)

    async def end(_: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        if ctx.span is not None:
            tracing.finish(ctx.span, status=params.response.status)

    async def failed(
        _: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        if ctx.span is not None:
            tracing.finish(ctx.span, error=params.exception)

    config.on_request_start.append(start)
    config.on_request_end.append(end)
    config.on_request_exception.append(failed)
    return [config]


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
