"""Thin async client of the Magento REST API: auth, rate limits and error translation."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import httpx
import orjson

from pim_hub.drivers.base import Metrics, classify_http_status, retry_after_seconds
from pim_hub.drivers.magento2.auth import oauth1_header
from pim_hub.drivers.magento2.config import (
    AdminTokenAuth,
    IntegrationTokenAuth,
    Magento2Config,
    OAuth1Auth,
)
from pim_hub.drivers.magento2.errors import (
    MSG_URL_KEY_EXISTS,
    NotFound,
    PermanentError,
    RetryableError,
    Unauthorized,
    UrlKeyConflict,
    magento_message,
)
from pim_hub.runtime.http import timed_out
from pim_hub.runtime.outbound import RefusedAddress

Mode = Literal["sync", "async", "bulk"]
TOKEN_PATH = "/V1/integration/admin/token"  # noqa: S105 - a route, not a secret


class RateLimiter:
    """At most `max_concurrency` calls in flight, started no faster than `per_second`."""

    def __init__(self, per_second: float | None, max_concurrency: int) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._sem = asyncio.Semaphore(max_concurrency)
        self._lock = asyncio.Lock()
        self._next = 0.0

    async def __aenter__(self) -> None:
        await self._sem.acquire()
        if self._interval:
            async with self._lock:
                now = time.monotonic()
                wait = self._next - now
                self._next = max(now, self._next) + self._interval
            if wait > 0:
                await asyncio.sleep(wait)

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()


class MagentoClient:
    """Calls `<base>/rest[/<store>][/async[/bulk]]/V1/...` and translates the answers.

    Raises (from `call`): RetryableError for timeouts, connection errors, 408/429/5xx;
    Unauthorized when a 401 survives one re-authentication; NotFound for 404;
    UrlKeyConflict for Magento's duplicate URL key; PermanentError for other 4xx.
    """

    def __init__(self, config: Magento2Config, http: httpx.AsyncClient, metrics: Metrics) -> None:
        self.config = config
        self.http = http
        self.metrics = metrics
        self.base = str(config.base_url).rstrip("/")
        self.limiter = RateLimiter(config.requests_per_second, config.max_concurrency)
        self._token: str | None = None
        self._token_lock = asyncio.Lock()

    def url(self, path: str, store: str | None = None, mode: Mode = "sync") -> str:
        """The full URL of a `/V1/...` path in a store scope and mode."""
        prefix = {"sync": "", "async": "/async", "bulk": "/async/bulk"}[mode]
        scope = f"/{store}" if store else ""
        return f"{self.base}/rest{scope}{prefix}{path}"

    async def _admin_token(self, auth: AdminTokenAuth, stale: str | None) -> str:
        async with self._token_lock:
            # Another call may have refreshed it while this one waited.
            if self._token is not None and self._token != stale:
                return self._token
            body = {"username": auth.username, "password": auth.password.get_secret_value()}
            resp = await self._send("POST", self.url(TOKEN_PATH), body, {})
            if resp.status_code != 200:
                raise self._error(resp, "admin token request failed")
            token = resp.json()
            if not isinstance(token, str):
                raise PermanentError("the admin token endpoint answered no token")
            self._token = token
            return token

    async def _auth_headers(self, method: str, url: str, stale: str | None) -> dict[str, str]:
        auth = self.config.auth
        if isinstance(auth, IntegrationTokenAuth):
            return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
        if isinstance(auth, OAuth1Auth):
            header = oauth1_header(
                method,
                url,
                consumer_key=auth.consumer_key,
                consumer_secret=auth.consumer_secret.get_secret_value(),
                token=auth.access_token,
                token_secret=auth.access_token_secret.get_secret_value(),
            )
            return {"Authorization": header}
        token = self._token if stale is None and self._token else None
        if token is None:
            token = await self._admin_token(auth, stale)
        return {"Authorization": f"Bearer {token}"}

    async def _send(
        self, method: str, url: str, body: Any, headers: dict[str, str], params: Any = None
    ) -> httpx.Response:
        content = orjson.dumps(body) if body is not None else None
        try:
            async with self.limiter:
                resp = await self.http.request(
                    method,
                    url,
                    content=content,
                    params=params,
                    headers={
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        **headers,
                    },
                    timeout=self.config.timeout_s,
                )
        except RefusedAddress as exc:
            # The configured base URL is not allowed (HUB_OUTBOUND_ALLOW): retrying cannot help.
            raise PermanentError(str(exc), kind="refused_address") from exc
        except httpx.TransportError as exc:
            if timed_out(exc):
                self.metrics.target_call("timeout")
                raise RetryableError(f"timeout calling Magento: {exc}", kind="timeout") from exc
            self.metrics.target_call("connection_error")
            raise RetryableError(f"cannot reach Magento: {exc}", kind="connection") from exc
        self.metrics.target_call(resp.status_code)
        return resp

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        store: str | None = None,
        mode: Mode = "sync",
        params: dict[str, str] | None = None,
    ) -> Any:
        """One REST call; returns the decoded JSON answer."""
        url = self.url(path, store, mode)
        headers = await self._auth_headers(method, url, None)
        resp = await self._send(method, url, body, headers, params)
        if resp.status_code == 401 and isinstance(self.config.auth, AdminTokenAuth):
            # Admin tokens expire (4 h by default) or get revoked: log in again, once.
            used = headers["Authorization"].removeprefix("Bearer ")
            headers = await self._auth_headers(method, url, used)
            resp = await self._send(method, url, body, headers, params)
        if classify_http_status(resp.status_code) == "ok":
            # orjson: several times faster than httpx's json.loads on bulk-sized answers.
            return orjson.loads(resp.content) if resp.content else None
        raise self._error(resp, f"{method} {path}")

    @staticmethod
    def _error(resp: httpx.Response, what: str) -> Exception:
        try:
            body: Any = resp.json()
        except ValueError:
            body = None
        status = resp.status_code
        message = magento_message(body, f"Magento answered {status} to {what}")
        text = resp.text[:2000]
        kind = f"http_{status}"
        if status == 401:
            return Unauthorized(message, status=status, response=text)
        if classify_http_status(status) == "retry":
            after = retry_after_seconds(resp.headers.get("Retry-After"))
            return RetryableError(
                message, status=status, response=text, retry_after=after, kind=kind
            )
        if status == 404:
            return NotFound(message, status=status, response=text)
        if isinstance(body, dict) and body.get("message") == MSG_URL_KEY_EXISTS:
            return UrlKeyConflict(message, status=status, response=text)
        return PermanentError(message, status=status, response=text, kind=kind)
