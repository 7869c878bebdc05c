"""Generic HTTP driver: POSTs each mutation as JSON to a configured URL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import urllib.request
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import BaseModel, Field, HttpUrl, SecretStr

from pim_hub.drivers.base import (
    DeliveryResult,
    Driver,
    IntegrationContext,
    classify_http_status,
    decoded_changes,
    retry_after_seconds,
)
from pim_hub.runtime.http import PolicyResolver, trace_configs
from pim_hub.runtime.outbound import RefusedAddress, policy
from pim_hub.schemas.events import Job

ALL_ENTITY_TYPES = frozenset(
    {
        "product",
        "product_model",
        "category",
        "family",
        "family_variant",
        "attribute",
        "attribute_option",
        "channel",
        "locale",
    }
)


class WebhookConfig(BaseModel):
    """Where and how to POST."""

    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    secret: SecretStr | None = Field(
        None,
        description="when set, requests are signed: Standard Webhooks headers (webhook-id, "
        "webhook-timestamp, webhook-signature) and X-PimHub-Signature (hex HMAC-SHA256 of "
        "the body, kept for receivers of earlier versions)",
    )
    timeout_s: float = Field(10.0, gt=0)
    include_state: bool = True


def job_body(job: Job, include_state: bool = True) -> dict[str, Any]:
    """The JSON document POSTed for a job (changes and state decoded from their JSON text)."""
    m = job.mutation
    body: dict[str, Any] = {
        "job_id": job.job_id,
        "integration_id": job.integration_id,
        "attempt": job.attempt,
        "mode": job.mode,
        "mutation_id": m.mutation_id,
        "entity_type": m.entity_type,
        "entity_key": m.entity_key,
        "operation": m.operation,
        "version": m.version,
        "changes": decoded_changes(job),
    }
    if include_state:
        body["state"] = orjson.loads(m.state) if m.state else None
    return body


def signature_headers(secret: str, message_id: str, body: bytes) -> dict[str, str]:
    """Signature headers of a request: Standard Webhooks and the hub's own.

    `webhook-signature` is `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`: with the
    timestamp signed, a receiver refuses a captured request replayed later (Standard
    Webhooks libraries check a 5-minute window). `X-PimHub-Signature` (hex HMAC of the body)
    stays for receivers of earlier versions.
    """
    key = secret.encode()
    stamp = str(int(time.time()))
    signed = f"{message_id}.{stamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{digest}",
        "X-PimHub-Signature": hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def _env_proxy(url: str) -> str | None:
    """The proxy the environment (HTTP_PROXY, NO_PROXY...) names for url, read once."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class WebhookDriver(Driver):
    """POSTs mutations to an HTTP endpoint; the job id is sent as Idempotency-Key.

    Each integration keeps its own aiohttp session of keep-alive connections. The
    dispatcher's shared httpx client cost 1-3 ms of CPU per request, more the more
    connections it held (its pool checks every connection on each request), so
    concurrency could not raise the rate of a dispatcher that is one event loop.
    """

    name: ClassVar[str] = "Webhook"
    key: ClassVar[str] = "webhook"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "POST every change as JSON to a URL of yours"
    supported_entity_types: ClassVar[frozenset[str]] = ALL_ENTITY_TYPES
    config_model: ClassVar[type[BaseModel]] = WebhookConfig

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None

    async def open(self, context: IntegrationContext) -> None:
        """Open the integration's connection pool (keep-alive)."""
        config = context.config
        assert isinstance(config, WebhookConfig)
        if self._session is None:
            # The environment's proxy is resolved once: aiohttp's trust_env would read
            # the environment again on every request.
            self._proxy = _env_proxy(str(config.url))
            self._session = aiohttp.ClientSession(
                # Every connection's addresses pass the outgoing URL policy when resolved.
                connector=aiohttp.TCPConnector(
                    limit=256, keepalive_timeout=30, resolver=PolicyResolver()
                ),
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "pim-hub-webhook"},
                # The job's trace context goes with the request (W3C traceparent).
                trace_configs=trace_configs(),
            )

    async def close(self) -> None:
        """Close the connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """POST one job; 2xx delivered, 408/429/5xx and network errors retryable, 4xx permanent."""
        config = context.config
        assert isinstance(config, WebhookConfig)
        try:
            body = orjson.dumps(job_body(job, config.include_state))
        except orjson.JSONDecodeError as exc:
            # A mutation whose changes or state are not JSON cannot become better by retrying.
            return DeliveryResult.permanent(
                f"mutation is not valid JSON: {exc}", kind="bad_mutation"
            )
        headers = {
            "Content-Type": "application/json",
            # Receivers deduplicate on it: delivery is at-least-once.
            "Idempotency-Key": job.job_id,
            "X-PimHub-Entity": job.mutation.entity_key,
            **config.headers,
        }
        if config.secret is not None:
            headers.update(signature_headers(config.secret.get_secret_value(), job.job_id, body))
        url = str(config.url)
        try:
            # The text first (IP literals in any notation, metadata names): names are
            # checked again on the addresses they resolve to when connecting.
            policy().check_url(url)
        except RefusedAddress as exc:
            return DeliveryResult.permanent(str(exc), kind="refused_address")
        if self._session is None:
            await self.open(context)  # called without open(): open on first use
        assert self._session is not None
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=config.timeout_s),
                allow_redirects=False,
                proxy=self._proxy,
            ) as resp:
                status = resp.status
                # Read to the end: the connection then goes back to the pool.
                raw = await resp.read()
                location = resp.headers.get("Location")
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError as exc:
            context.metrics.target_call("timeout")
            return DeliveryResult.retry(
                f"timeout posting to the webhook after {config.timeout_s}s: {exc!r}",
                kind="timeout",
            )
        except RefusedAddress as exc:
            return DeliveryResult.permanent(str(exc), kind="refused_address")
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            context.metrics.target_call("connection_error")
            # Refused, reset or closed alike: the message must not tell an open port from a
            # closed one (the URL is data anyone with registry access writes).
            context.logger.debug("webhook connection failed", extra={"error": repr(exc)})
            return DeliveryResult.retry("cannot reach the webhook", kind="connection")
        except ValueError as exc:
            # A request that cannot be made (a CR or LF in a header value, credentials in
            # both the URL and a header) fails again on every retry.
            return DeliveryResult.permanent(
                f"the request cannot be made: {type(exc).__name__}", kind="bad_request"
            )
        context.metrics.target_call(status)
        verdict = classify_http_status(status)
        if verdict == "ok":
            return DeliveryResult.delivered(target_ref=location)
        text = raw[:2000].decode(errors="replace")
        if verdict == "retry":
            return DeliveryResult.retry(
                f"webhook answered {status}",
                retry_after=retry_after_seconds(retry_after),
                status=status,
                response=text,
                kind=f"http_{status}",
            )
        return DeliveryResult.permanent(
            f"webhook answered {status}",
            status=status,
            response=text,
            kind=f"http_{status}",
        )
