"""The outgoing URL policy and the webhook driver's requests: metadata, notations, signatures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
from typing import Any

import pytest
from aiohttp import web

from pim_hub.drivers.webhook.driver import WebhookDriver
from pim_hub.runtime import outbound
from pim_hub.runtime.outbound import OutboundPolicy, RefusedAddress
from tests.hook_server import serve_hook
from tests.unit.test_webhook_driver import _context, _job


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "2852039166",
        "0xA9FEA9FE",
        "[::ffff:169.254.169.254]",
        "metadata.google.internal",
        "[fe80::1]",
        "0.0.0.0",  # noqa: S104 - a target address to refuse, not a bind
        "224.0.0.1",
    ],
)
def test_metadata_and_link_local_are_refused_in_any_notation(host: str) -> None:
    with pytest.raises(RefusedAddress):
        OutboundPolicy.parse("loopback,private").check_url(f"http://{host}/hook")


def test_private_and_loopback_need_the_allowlist() -> None:
    strict = OutboundPolicy.parse("")
    for url in (
        "http://127.0.0.1:5432/",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://2130706433/",
    ):
        with pytest.raises(RefusedAddress):
            strict.check_url(url)
    strict.check_url("http://93.184.215.14/hook")  # public: allowed
    only = OutboundPolicy.parse("10.1.0.0/16")
    only.check_url("http://10.1.2.3/")
    with pytest.raises(RefusedAddress):
        only.check_url("http://10.2.0.1/")
    # A network of the list may open a link-local target on purpose.
    OutboundPolicy.parse("169.254.0.0/16").check_url("http://169.254.169.254/")
    with pytest.raises(ValueError, match="HUB_OUTBOUND_ALLOW"):
        OutboundPolicy.parse("everything")


def _run(url: str, handler: Any = None, **config: Any) -> Any:
    async def go() -> Any:
        driver = WebhookDriver()
        ctx = _context(url, **config)
        await driver.open(ctx)
        try:
            return await driver.handle(_job(), ctx)
        finally:
            await driver.close()

    return asyncio.run(go())


def test_a_metadata_url_is_dead_lettered_without_a_connection() -> None:
    result = _run("http://2852039166/latest/meta-data/")
    assert result.outcome == "failed" and not result.retryable
    assert result.error_kind == "refused_address"


def test_a_name_resolving_to_a_refused_address_is_refused_at_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbound, "_policy", OutboundPolicy.parse(""))

    async def go() -> Any:
        async def ok(request: web.Request) -> web.StreamResponse:
            return web.Response(status=200)

        runner, url = await serve_hook(ok)
        port = url.rsplit(":", 1)[1].split("/")[0]
        driver = WebhookDriver()
        # `localhost` passes the text check; its address, loopback, does not.
        ctx = _context(f"http://localhost:{port}/hook")
        await driver.open(ctx)
        try:
            return await driver.handle(_job(), ctx)
        finally:
            await driver.close()
            await runner.cleanup()

    result = asyncio.run(go())
    assert result.outcome == "failed" and not result.retryable
    assert result.error_kind == "refused_address"


def test_connection_errors_do_not_tell_open_ports_from_closed_ones() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = _run(f"http://127.0.0.1:{port}/hook")  # nothing listens
    assert closed.retryable and closed.reason == "cannot reach the webhook"
    assert str(port) not in (closed.reason or "")


def test_a_crlf_in_a_header_value_is_permanent_not_retried() -> None:
    async def go() -> Any:
        async def ok(request: web.Request) -> web.StreamResponse:
            return web.Response(status=200)

        runner, url = await serve_hook(ok)
        driver = WebhookDriver()
        ctx = _context(url, headers={"X-Tag": "a\r\nX-Injected: 1"})
        await driver.open(ctx)
        try:
            return await driver.handle(_job(), ctx)
        finally:
            await driver.close()
            await runner.cleanup()

    result = asyncio.run(go())
    assert result.outcome == "failed" and not result.retryable
    assert result.error_kind == "bad_request"


def test_requests_carry_a_standard_webhooks_signature_with_a_timestamp() -> None:
    seen: dict[str, Any] = {}

    async def go() -> Any:
        async def record(request: web.Request) -> web.StreamResponse:
            seen["headers"] = dict(request.headers)
            seen["body"] = await request.read()
            return web.Response(status=204)

        runner, url = await serve_hook(record)
        driver = WebhookDriver()
        ctx = _context(url, secret="whsec-test")
        await driver.open(ctx)
        try:
            return await driver.handle(_job(), ctx)
        finally:
            await driver.close()
            await runner.cleanup()

    assert asyncio.run(go()).outcome == "delivered"
    headers, body = seen["headers"], seen["body"]
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    version, signature = headers["webhook-signature"].split(",", 1)
    expected = hmac.new(b"whsec-test", f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256)
    assert version == "v1" and signature == base64.b64encode(expected.digest()).decode()
    assert msg_id == "j-1" and stamp.isdigit()


def test_the_drivers_http_client_applies_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from pim_hub.runtime.http import async_client

    async def go(url: str, **kw: Any) -> Any:
        async with async_client(timeout=5, max_connections=2, **kw) as client:
            try:
                return (await client.get(url)).status_code
            except RefusedAddress as exc:
                return exc

    # Text: an IP literal never reaches a resolver.
    assert isinstance(asyncio.run(go("http://[::ffff:169.254.169.254]/")), RefusedAddress)

    async def serve_and_get(url_of: Any, **kw: Any) -> Any:
        async def ok(request: web.Request) -> web.StreamResponse:
            return web.Response(status=200)

        runner, url = await serve_hook(ok)
        port = url.rsplit(":", 1)[1].split("/")[0]
        try:
            return await go(url_of(port), **kw)
        finally:
            await runner.cleanup()

    monkeypatch.setattr(outbound, "_policy", OutboundPolicy.parse(""))
    # Connect time: `localhost` resolves to loopback, which the strict policy refuses.
    refused = asyncio.run(serve_and_get(lambda p: f"http://localhost:{p}/hook"))
    assert isinstance(refused, RefusedAddress)
    # A client of an operator-configured service (the Akeneo API) is not bound by it.
    assert (
        asyncio.run(serve_and_get(lambda p: f"http://localhost:{p}/hook", outbound_policy=False))
        == 405
    )


def test_the_magento_driver_dead_letters_a_refused_base_url() -> None:
    from pim_hub.drivers.magento2.client import MagentoClient
    from pim_hub.drivers.magento2.errors import PermanentError
    from pim_hub.runtime.http import async_client
    from tests.unit.test_http import Counted, _magento

    async def main() -> PermanentError:
        async with async_client(timeout=5, max_connections=2) as http:
            client = MagentoClient(_magento("http://169.254.169.254", 5), http, Counted())
            with pytest.raises(PermanentError) as info:
                await client.call("GET", "/V1/store/storeViews")
        return info.value

    error = asyncio.run(main())
    assert error.kind == "refused_address" and not error.retryable


def test_the_default_refuses_loopback_private_and_link_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without HUB_OUTBOUND_ALLOW only public addresses are reached (the session opens more)."""
    from pim_hub.runtime.settings import Settings

    monkeypatch.delenv("HUB_OUTBOUND_ALLOW", raising=False)
    allow = Settings().outbound_allow
    assert allow == outbound.DEFAULT_ALLOW
    for default in (OutboundPolicy.parse(allow), OutboundPolicy()):
        for url in (
            "http://127.0.0.1:5432/",
            "http://[::1]/",
            "http://10.0.0.7/",
            "http://172.16.3.4/",
            "http://192.168.1.1/",
            "http://[fd00::1]/",
            "http://169.254.169.254/",
            "http://metadata.google.internal/",
        ):
            with pytest.raises(RefusedAddress, match="outgoing URL policy"):
                default.check_url(url)
        default.check_url("https://93.184.215.14/hook")


def test_a_fresh_process_without_the_setting_refuses_loopback() -> None:
    """The module's own policy, before any entry point configures it, is the default."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HUB_OUTBOUND_ALLOW"}
    code = (
        "from pim_hub.runtime import outbound\n"
        "try:\n"
        "    outbound.policy().check_url('http://127.0.0.1:8099/')\n"
        "except outbound.RefusedAddress as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:") and "HUB_OUTBOUND_ALLOW" in done.stdout


def test_a_refused_delivery_names_the_policy_and_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbound, "_policy", OutboundPolicy.parse(outbound.DEFAULT_ALLOW))
    result = _run("http://127.0.0.1:8099/hook")
    assert result.outcome == "failed" and not result.retryable
    assert result.error_kind == "refused_address"
    assert "loopback" in result.reason and "outgoing URL policy" in result.reason
    assert "HUB_OUTBOUND_ALLOW" in result.reason
    # A name is refused on its addresses with the same advice.
    with pytest.raises(RefusedAddress, match=r"resolves to loopback addresses.*HUB_OUTBOUND_ALLOW"):
        OutboundPolicy().filter_resolved("localhost", [{"host": "127.0.0.1"}])
