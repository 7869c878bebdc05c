"""Errors of the Magento 2 driver: retryable vs permanent, with Magento's message filled in."""

from __future__ import annotations

import re
from typing import Any

from pim_hub.drivers.base import DeliveryResult
from pim_hub.schemas.errors import HubError
from pim_hub.schemas.errors import PermanentError as HubPermanent
from pim_hub.schemas.errors import RetryableError as HubRetryable

_PLACEHOLDER = re.compile(r"%(\w+)")

MSG_URL_KEY_EXISTS = "URL key for specified store already exists."


def render_message(message: str, parameters: Any) -> str:
    """Fill Magento's `%1` / `%name` placeholders from `parameters` (list or dict)."""
    if not parameters:
        return message
    if isinstance(parameters, dict):
        named = {str(k): str(v) for k, v in parameters.items()}
    elif isinstance(parameters, list):
        named = {str(i + 1): str(v) for i, v in enumerate(parameters)}
    else:
        return message
    return _PLACEHOLDER.sub(lambda m: named.get(m.group(1), m.group(0)), message)


def magento_message(body: Any, fallback: str) -> str:
    """The readable message of a Magento error body (parameters filled in, nested errors added)."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return fallback
    text = render_message(body["message"], body.get("parameters"))
    extra = [
        render_message(e["message"], e.get("parameters"))
        for e in body.get("errors") or []
        if isinstance(e, dict) and isinstance(e.get("message"), str)
    ]
    return "; ".join([text, *extra]) if extra else text


class MagentoError(HubError):
    """Base of the driver's errors; `retryable` decides the dispatcher's next step."""

    retryable = False
    kind = "magento"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        response: str | None = None,
        retry_after: float | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.response = response
        self.retry_after = retry_after
        if kind is not None:
            self.kind = kind

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status else self.message


class RetryableError(MagentoError, HubRetryable):
    """May pass later: 5xx, 429, timeouts, references not synced yet."""

    retryable = True
    kind = "retryable"


class PermanentError(MagentoError, HubPermanent):
    """Trying again cannot fix it: 4xx validation, mapping or configuration problems."""

    kind = "permanent"


class NotFound(PermanentError):
    """404 from Magento (an unknown SKU, category or route)."""

    kind = "http_404"


class Unauthorized(PermanentError):
    """401 that re-authenticating did not cure."""

    kind = "http_401"


class UrlKeyConflict(PermanentError):
    """Another product already owns the URL key in a store."""

    kind = "url_key_conflict"


class MissingReference(RetryableError):
    """A category, parent or option the entity needs has not been synced yet."""

    kind = "missing_reference"


class MappingError(PermanentError):
    """The data cannot be mapped with the configured rules."""

    kind = "mapping"


def as_result(exc: MagentoError) -> DeliveryResult:
    """The dispatcher's result for a failed delivery: retried later, or permanent."""
    if exc.retryable:
        return DeliveryResult.retry(
            str(exc),
            retry_after=exc.retry_after,
            status=exc.status,
            response=exc.response,
            kind=exc.kind,
        )
    return DeliveryResult.permanent(
        str(exc), status=exc.status, response=exc.response, kind=exc.kind
    )
