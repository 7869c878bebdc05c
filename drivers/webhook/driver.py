"""Generic HTTP driver: POSTs each mutation as JSON to a configured URL."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import BaseModel, Field, HttpUrl, SecretStr

from drivers.base import (
    DeliveryResult,
    Driver,
    IntegrationContext,
    classify_http_status,
    retry_after_seconds,
)
from schemas.events import Job

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
        None, description="when set, X-PimHub-Signature carries hex HMAC-SHA256 of the body"
    )
    timeout_s: float = Field(10.0, gt=0)
    include_state: bool = True


def job_body(job: Job, include_state: bool = True) -> dict[str, Any]:
    """The JSON document POSTed for a job (changes and state decoded from their JSON text)."""
    m = job.mutation
    changes = [
        {
            "field": c.field,
            "attribute": c.attribute,
            "locale": c.locale,
            "scope": c.scope,
            **({"old": orjson.loads(c.old)} if c.old is not None else {"old": None}),
            **({"new": orjson.loads(c.new)} if c.new is not None else {"new": None}),
            **({"added": c.added} if c.added is not None else {}),
            **({"removed": c.removed} if c.removed is not None else {}),
        }
        for c in m.changes
    ]
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
        "changes": changes,
    }
    if include_state:
        body["state"] = orjson.loads(m.state) if m.state else None
    return body


class WebhookDriver(Driver):
    """POSTs mutations to an HTTP endpoint; the job id is sent as Idempotency-Key."""

    name: ClassVar[str] = "Webhook"
    key: ClassVar[str] = "webhook"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "POST every change as JSON to a URL of yours"
    supported_entity_types: ClassVar[frozenset[str]] = ALL_ENTITY_TYPES
    config_model: ClassVar[type[BaseModel]] = WebhookConfig

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
            secret = config.secret.get_secret_value().encode()
            headers["X-PimHub-Signature"] = hmac.new(secret, body, hashlib.sha256).hexdigest()
        try:
            resp = await context.http.post(
                str(config.url), content=body, headers=headers, timeout=config.timeout_s
            )
        except httpx.TimeoutException as exc:
            context.metrics.target_call("timeout")
            return DeliveryResult.retry(f"timeout posting to the webhook: {exc}", kind="timeout")
        except httpx.TransportError as exc:
            context.metrics.target_call("connection_error")
            return DeliveryResult.retry(f"cannot reach the webhook: {exc}", kind="connection")
        context.metrics.target_call(resp.status_code)
        verdict = classify_http_status(resp.status_code)
        if verdict == "ok":
            return DeliveryResult.delivered(target_ref=resp.headers.get("Location"))
        text = resp.text[:2000]
        if verdict == "retry":
            return DeliveryResult.retry(
                f"webhook answered {resp.status_code}",
                retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
                status=resp.status_code,
                response=text,
                kind=f"http_{resp.status_code}",
            )
        return DeliveryResult.permanent(
            f"webhook answered {resp.status_code}",
            status=resp.status_code,
            response=text,
            kind=f"http_{resp.status_code}",
        )
