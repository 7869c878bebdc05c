"""Akeneo REST client (httpx, async): OAuth2 with refresh, bounded concurrency, retries, paging."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from pim_hub.runtime import metrics
from pim_hub.runtime.http import async_client, timed_out
from pim_hub.schemas.errors import HubError, PermanentError, RetryableError
from pim_hub.services.ingest.settings import IngestSettings

logger = logging.getLogger(__name__)

Json = dict[str, Any]
API = "/api/rest/v1"
TOKEN_PATH = "/api/oauth/v1/token"  # noqa: S105 (a route, not a secret)
MAX_PAGE = 100
#: renew the access token this long before Akeneo says it expires
_TOKEN_MARGIN_S = 30.0


class AkeneoError(HubError):
    """Root of the client's errors."""


class AkeneoUnavailable(AkeneoError, RetryableError):
    """Akeneo kept failing (5xx, 429, timeouts, connection errors) after every retry."""


class AkeneoAuthError(AkeneoError, PermanentError):
    """Akeneo refused the credentials."""


class AkeneoHTTPError(AkeneoError):
    """An answer no retry can fix (4xx other than 401/404/429)."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    return str(body.get("message", "")) if isinstance(body, dict) else response.reason_phrase


def relative(url: str) -> str:
    """Path and query of a URL (next links are stored without the host)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class AkeneoClient:
    """One Akeneo connection: tokens shared by every request, at most `concurrency` in flight.

    Retries 5xx, timeouts, connection errors and 429 (waiting `Retry-After` when given, else
    exponential backoff with jitter); a 401 renews the token (refresh grant, then password).
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        secret: str,
        username: str,
        password: str,
        concurrency: int = 4,
        timeout_s: float = 30.0,
        max_attempts: int = 8,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._basic = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self._user = {"username": username, "password": password}
        self._http = async_client(
            base_url=self.base_url,
            timeout=timeout_s,
            max_connections=concurrency,
            transport=transport,
            # The operator configures the Akeneo URL (HUB_INGEST_AKENEO_URL): not registry
            # data, so the outgoing policy for targets does not apply.
            outbound_policy=False,
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._token_lock = asyncio.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stats: dict[str, int] = {"requests": 0, "retries": 0, "token_grants": 0}

    @classmethod
    def from_settings(cls, ingest: IngestSettings, **overrides: Any) -> AkeneoClient:
        """A client for the configured connection."""
        kwargs: dict[str, Any] = {
            "client_id": ingest.akeneo_client_id,
            "secret": ingest.akeneo_secret.get_secret_value(),
            "username": ingest.akeneo_username,
            "password": ingest.akeneo_password.get_secret_value(),
            "concurrency": ingest.akeneo_concurrency,
            "timeout_s": ingest.akeneo_timeout_s,
            "max_attempts": ingest.akeneo_max_attempts,
            "backoff_max_s": ingest.akeneo_backoff_max_s,
        }
        kwargs.update(overrides)
        return cls(ingest.akeneo_url, **kwargs)

    async def __aenter__(self) -> AkeneoClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ---------------------------------------------------------------- retries
    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return float(exc.retry_after)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (state.attempt_number - 1))
        return float(ceiling * (0.5 + random.random() / 2))

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats["retries"] += 1
        exc = state.outcome.exception() if state.outcome else None
        logger.info(
            "akeneo request retried", extra={"attempt": state.attempt_number, "reason": str(exc)}
        )

    async def _with_retries(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(method, path, **kwargs)
        except _Retryable as exc:
            raise AkeneoUnavailable(f"{method} {relative(path)}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, method: str, path: str, *, auth: bool = True, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if auth:
            headers["Authorization"] = f"Bearer {await self._token()}"
        async with self._slots:
            self.stats["requests"] += 1
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if timed_out(exc):
                    metrics.AKENEO_CALLS.labels("timeout").inc()
                    raise _Retryable(f"timeout ({type(exc).__name__})") from exc
                metrics.AKENEO_CALLS.labels("connection_error").inc()
                raise _Retryable(f"connection failed ({type(exc).__name__})") from exc
        status = response.status_code
        metrics.AKENEO_CALLS.labels(str(status)).inc()
        if status == 429:
            metrics.AKENEO_RATE_LIMITED.inc()
            raise _Retryable("429 too many requests", _retry_after(response))
        if status >= 500 or status == 408:
            raise _Retryable(f"{status} {_message(response)}")
        if status == 401 and auth:
            # Expired or revoked: renew once and try again straight away.
            self._access = None
            self._expires_at = 0.0
            raise _Retryable("401 token expired", 0.0)
        return response

    # ---------------------------------------------------------------- tokens
    async def _token(self) -> str:
        async with self._token_lock:
            if self._access and time.monotonic() < self._expires_at:
                return self._access
            body: Json | None = None
            if self._refresh:
                body = await self._grant(
                    {"grant_type": "refresh_token", "refresh_token": self._refresh}
                )
            if body is None:
                body = await self._grant({"grant_type": "password", **self._user})
            if body is None:
                raise AkeneoAuthError("Akeneo refused the client credentials or the API user")
            self._access = str(body["access_token"])
            self._refresh = body.get("refresh_token")
            lifetime = float(body.get("expires_in") or 3600)
            self._expires_at = time.monotonic() + max(1.0, lifetime - _TOKEN_MARGIN_S)
            self.stats["token_grants"] += 1
            return self._access

    async def _grant(self, body: Json) -> Json | None:
        response = await self._with_retries(
            "POST",
            TOKEN_PATH,
            auth=False,
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", "Authorization": self._basic},
        )
        if response.status_code >= 400:
            logger.warning(
                "akeneo token grant refused",
                extra={"grant": body["grant_type"], "status": response.status_code},
            )
            return None
        data: Json = response.json()
        return data

    # ---------------------------------------------------------------- reads
    async def get(self, path: str, params: dict[str, Any] | None = None) -> Json | None:
        """GET one resource; None when Akeneo answers 404 (deleted or not visible)."""
        response = await self._with_retries("GET", path, params=params)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise AkeneoHTTPError("GET", path, response.status_code, _message(response))
        body: Json = orjson.loads(response.content)
        return body

    async def count(self, path: str, params: dict[str, Any] | None = None) -> int:
        """How many items a list endpoint holds for these filters (`with_count` on page 1)."""
        query = {**(params or {}), "pagination_type": "page", "page": 1, "limit": 1}
        body = await self.get(path, {**query, "with_count": "true"})
        if body is None or not isinstance(body.get("items_count"), int):
            raise AkeneoHTTPError("GET", path, 404, "no items_count in the answer")
        return int(body["items_count"])

    async def pages(
        self, path: str, params: dict[str, Any] | None = None
    ) -> AsyncIterator[tuple[list[Json], str | None]]:
        """Stream a list endpoint page by page: (items, next link or None).

        Follows `_links.next.href` (search_after cursors are opaque: never built here).
        Only one page is held at a time, so memory does not grow with the catalogue.
        """
        url: str | None = path
        query = params
        while url is not None:
            body = await self.get(url, query)
            if body is None:
                raise AkeneoHTTPError("GET", url, 404, "list endpoint not found")
            query = None  # the next link carries every parameter
            nxt = body.get("_links", {}).get("next", {}).get("href")
            url = relative(nxt) if nxt else None
            items = body.get("_embedded", {}).get("items", [])
            yield items, url

    async def products_by_uuid(self, uuids: Iterable[str]) -> dict[str, Json]:
        """The live products among `uuids`, by uuid, 100 per search call."""
        wanted = list(dict.fromkeys(uuids))
        found: dict[str, Json] = {}

        async def one(chunk: list[str]) -> None:
            search = orjson.dumps({"uuid": [{"operator": "IN", "value": chunk}]}).decode()
            params = {"search": search, "limit": MAX_PAGE, "pagination_type": "search_after"}
            async for items, _ in self.pages(f"{API}/products-uuid", params):
                for item in items:
                    found[item["uuid"]] = item

        await asyncio.gather(
            *(one(wanted[i : i + MAX_PAGE]) for i in range(0, len(wanted), MAX_PAGE))
        )
        return found
