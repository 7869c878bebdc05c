"""The shared httpx client over aiohttp: answers, timeouts and lost connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web

from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.config import Magento2Config
from pim_hub.drivers.magento2.errors import RetryableError
from pim_hub.runtime.http import async_client, timed_out

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "body": body.decode(),
            "auth": request.headers.get("Authorization"),
        },
        status=201,
    )


def test_requests_go_through_and_answers_come_back() -> None:
    async def main() -> None:
        async with serving(echo) as url, async_client(timeout=5, max_connections=4) as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        f"{url}/V1/p?n={i}", content=b'{"x":1}', headers={"Authorization": "k"}
                    )
                    for i in range(20)
                )
            )
        assert [a.status_code for a in answers] == [201] * 20
        assert answers[3].json() == {
            "method": "POST",
            "path": "/V1/p?n=3",
            "body": '{"x":1}',
            "auth": "k",
        }

    asyncio.run(main())


def _failure(handler: Handler | None, timeout: float) -> httpx.TransportError:
    """The error of one GET to a server answering with `handler` (None: a closed port)."""

    async def main() -> httpx.TransportError:
        async with contextlib.AsyncExitStack() as stack:
            if handler is None:
                url = f"http://127.0.0.1:{free_port()}/"
            else:
                url = await stack.enter_async_context(serving(handler))
            http = await stack.enter_async_context(async_client(timeout=timeout, max_connections=4))
            with pytest.raises(httpx.TransportError) as info:
                await http.get(url)
        return info.value

    return asyncio.run(main())


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1)
    return web.json_response({})


def test_a_slow_answer_is_a_timeout() -> None:
    assert timed_out(_failure(slow, timeout=0.2))


def test_a_refused_connection_is_not_a_timeout() -> None:
    assert not timed_out(_failure(None, timeout=5))


def test_a_connection_dropped_without_an_answer_is_not_a_timeout() -> None:
    async def drop(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
        return web.json_response({})

    assert not timed_out(_failure(drop, timeout=5))


def test_httpx_own_errors_keep_their_class() -> None:
    request = httpx.Request("GET", "http://x/")
    assert timed_out(httpx.ReadTimeout("slow", request=request))
    assert not timed_out(httpx.ConnectError("refused", request=request))


class Counted:
    def __init__(self) -> None:
        self.calls: list[int | str] = []

    def target_call(self, status: int | str) -> None:
        self.calls.append(status)


def _magento(url: str, timeout: float) -> Magento2Config:
    return Magento2Config.model_validate(
        {"base_url": url, "auth": {"kind": "integration_token", "token": "t"}, "timeout_s": timeout}
    )


def test_magento_client_names_timeouts_and_lost_connections() -> None:
    counted = Counted()

    async def main() -> tuple[RetryableError, RetryableError, object]:
        async with async_client(timeout=5, max_connections=4) as http:
            async with serving(slow) as url:
                with pytest.raises(RetryableError) as slow_info:
                    await MagentoClient(_magento(url, 0.2), http, counted).call(
                        "GET", "/V1/store/storeViews"
                    )
            refused = f"http://127.0.0.1:{free_port()}"
            with pytest.raises(RetryableError) as refused_info:
                await MagentoClient(_magento(refused, 5), http, counted).call(
                    "GET", "/V1/store/storeViews"
                )
            async with serving(echo) as url:
                answer = await MagentoClient(_magento(url, 5), http, counted).call(
                    "PUT", "/V1/products/a", {"product": {"sku": "a"}}, store="en"
                )
        return slow_info.value, refused_info.value, answer

    slow_error, refused_error, answer = asyncio.run(main())
    assert counted.calls == ["timeout", "connection_error", 201]
    assert slow_error.kind == "timeout"
    assert refused_error.kind == "connection"
    assert answer == {
        "method": "PUT",
        "path": "/rest/en/V1/products/a",
        "body": '{"product":{"sku":"a"}}',
        "auth": "Bearer t",
    }
