"""Build, sign and send Akeneo webhooks (legacy Events API and Event Platform CloudEvents)."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

import httpx
import orjson

from pim_hub.sandbox.akeneo.catalogue import Change, Json
from pim_hub.sandbox.akeneo.reference import ATTRIBUTE_BY_CODE

LEGACY_SIGNATURE = "X-Akeneo-Request-Signature"
LEGACY_TIMESTAMP = "X-Akeneo-Request-Timestamp"
EP_SIGNATURE_PRIMARY = "X-AKENEO-SIGNATURE-PRIMARY"
EP_SIGNATURE_SECONDARY = "X-AKENEO-SIGNATURE-SECONDARY"
EP_SIGNATURE_ALGORITHM = "X-AKENEO-SIGNATURE-ALGORITHM"
MAX_LEGACY_EVENTS = 10  # the Events API batches at most 10 events per request
DEFAULT_PIM_URL = "http://pim_hub.sandbox.akeneo.local"
_AUTHOR_NS = uuid.UUID("6f1d2c1e-5b0a-4f43-9a64-6e1f3c0d2b7a")


@dataclass(frozen=True)
class SignedWebhook:
    """A ready-to-send request: the exact body bytes that were signed, and its headers."""

    headers: dict[str, str]
    body: bytes


def sign_legacy(secret: str, timestamp: int | str, body: bytes) -> str:
    """Events API signature: hex HMAC-SHA256 of `"<timestamp>.<raw body>"`."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_event_platform(secret: str, body: bytes) -> str:
    """Event Platform signature: hex HMAC-SHA256 of the raw body (no timestamp)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------------- legacy Events API
def legacy_event(
    change: Change, *, pim_source: str = DEFAULT_PIM_URL, event_id: str | None = None
) -> Json:
    """One item of the Events API `events` array for a change."""
    if change.entity == "product":
        if change.action == "removed":
            resource: Json = {"identifier": change.identifier, "uuid": change.key}
        else:
            assert change.after is not None
            # Serenity events carry the full product plus its top-level identifier.
            resource = {"uuid": change.key, "identifier": change.identifier, **change.after}
    elif change.action == "removed":
        resource = {"code": change.key}
    else:
        assert change.after is not None
        resource = dict(change.after)
    return {
        "action": f"{change.entity}.{change.action}",
        "event_id": event_id or str(uuid.uuid4()),
        "event_datetime": change.at.astimezone(UTC).isoformat(),
        "author": change.author,
        "author_type": change.author_type,
        "pim_source": pim_source,
        "data": {"resource": resource},
    }


def legacy_webhook(
    changes: Sequence[Change],
    *,
    secret: str,
    pim_source: str = DEFAULT_PIM_URL,
    timestamp: int | None = None,
    event_ids: Sequence[str] | None = None,
) -> SignedWebhook:
    """A signed Events API request `{"events": [...]}` for up to 10 changes.

    Args:
        changes: the edits to report (1 to 10).
        secret: the connection's event subscription secret.
        pim_source: the PIM URL put in `pim_source`.
        timestamp: unix seconds for the signature header (now by default; old values let
            tests exercise the receiver's staleness check).
        event_ids: fixed event ids (to test deduplication); random uuid4 by default.
    """
    if not 1 <= len(changes) <= MAX_LEGACY_EVENTS:
        raise ValueError(f"the Events API sends 1 to {MAX_LEGACY_EVENTS} events per request")
    ids = list(event_ids) if event_ids is not None else [None] * len(changes)
    events = [
        legacy_event(c, pim_source=pim_source, event_id=i)
        for c, i in zip(changes, ids, strict=True)
    ]
    body = orjson.dumps({"events": events})
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return SignedWebhook(
        {
            "Content-Type": "application/json",
            LEGACY_TIMESTAMP: stamp,
            LEGACY_SIGNATURE: sign_legacy(secret, stamp, body),
        },
        body,
    )


# ------------------------------------------------------------------------- Event Platform
def _author(change: Change) -> Json:
    if change.author_type == "api":
        # API authors are identified by the connection's client id.
        return {"identifier": change.author, "type": "api"}
    return {"identifier": str(uuid.uuid5(_AUTHOR_NS, change.author)), "type": "user"}


def delta_changes(before: Json, after: Json) -> Json:
    """The `changes` object of a `*.updated.delta` event: what differs between two states."""
    changes: Json = {}
    for key in ("enabled", "family", "parent"):
        if before.get(key) != after.get(key):
            changes[key] = {"previous": before.get(key), "new": after.get(key)}
    old_cats, new_cats = set(before.get("categories", [])), set(after.get("categories", []))
    if old_cats != new_cats:
        changes["categories"] = {
            "added": sorted(new_cats - old_cats),
            "removed": sorted(old_cats - new_cats),
        }
    values: Json = {}
    old_values, new_values = before.get("values", {}), after.get("values", {})
    for code in sorted(set(old_values) | set(new_values)):
        old = {(e["locale"], e["scope"]): e["data"] for e in old_values.get(code, [])}
        new = {(e["locale"], e["scope"]): e["data"] for e in new_values.get(code, [])}
        attr = ATTRIBUTE_BY_CODE.get(code)
        diffs = [
            {
                "previous": old.get(key),
                "new": new.get(key),
                "type": attr.type if attr else None,
                "locale": key[0],
                "scope": key[1],
            }
            for key in sorted(set(old) | set(new), key=lambda k: (k[0] or "", k[1] or ""))
            if old.get(key) != new.get(key)
        ]
        if diffs:
            values[code] = diffs
    if values:
        changes["values"] = values
    return changes


def cloud_event(
    change: Change,
    *,
    subscription_id: str,
    delta: bool = False,
    send_product_identifier: bool = False,
    source: str = "pim",
    event_id: str | None = None,
) -> Json:
    """A CloudEvents 1.0 (structured mode) Event Platform event for a change.

    Product and product-model events are notify-only: they carry the uuid or code, and the
    subscriber fetches the resource over REST. With `delta=True` an update becomes
    `*.updated.delta` carrying the field-level changes.
    """
    verb = {"created": "created", "updated": "updated", "removed": "deleted"}[change.action]
    noun = "product" if change.entity == "product" else "product-model"
    event_type = f"com.akeneo.pim.v1.{noun}.{verb}"
    data: Json
    if change.entity == "product":
        product: Json = {"uuid": change.key}
        if send_product_identifier:
            product["identifier"] = change.identifier
        data = {"product": product}
    else:
        data = {"product_model": {"code": change.key}}
    if delta and change.action == "updated":
        event_type += ".delta"
        assert change.before is not None and change.after is not None
        key = "product" if change.entity == "product" else "product_model"
        data[key]["updated_at"] = {
            "date": change.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "timezone": "UTC",
        }
        data[key]["changes"] = delta_changes(change.before, change.after)
    data["author"] = _author(change)
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "subject": subscription_id,
        "datacontenttype": "application/json",
        "dataschema": f"https://event.prd.sdk.akeneo.cloud/spec/{event_type}.schema.json",
        "time": change.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": data,
    }


def event_platform_webhook(
    change: Change,
    *,
    primary_secret: str,
    secondary_secret: str | None = None,
    subscription_id: str = "0190fe8a-6213-76ce-8a9f-ba36a5ef555a",
    delta: bool = False,
    send_product_identifier: bool = False,
    event_id: str | None = None,
) -> SignedWebhook:
    """A signed Event Platform HTTPS delivery (one CloudEvent per request)."""
    event = cloud_event(
        change,
        subscription_id=subscription_id,
        delta=delta,
        send_product_identifier=send_product_identifier,
        event_id=event_id,
    )
    body = orjson.dumps(event)
    headers = {
        "Content-Type": "application/json",
        EP_SIGNATURE_ALGORITHM: "HmacSHA256",
        EP_SIGNATURE_PRIMARY: sign_event_platform(primary_secret, body),
    }
    if secondary_secret:
        headers[EP_SIGNATURE_SECONDARY] = sign_event_platform(secondary_secret, body)
    return SignedWebhook(headers, body)


# ------------------------------------------------------------------------- delivery
def post_webhook(
    url: str, webhook: SignedWebhook, *, client: httpx.Client | None = None, timeout: float = 5.0
) -> httpx.Response:
    """POST a signed webhook; the body bytes go out untouched so the signature holds."""
    if client is not None:
        return client.post(url, content=webhook.body, headers=webhook.headers, timeout=timeout)
    with httpx.Client() as own:
        return own.post(url, content=webhook.body, headers=webhook.headers, timeout=timeout)


async def apost_webhook(
    url: str,
    webhook: SignedWebhook,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float = 5.0,
) -> httpx.Response:
    """Async twin of `post_webhook`."""
    if client is not None:
        return await client.post(
            url, content=webhook.body, headers=webhook.headers, timeout=timeout
        )
    async with httpx.AsyncClient() as own:
        return await own.post(url, content=webhook.body, headers=webhook.headers, timeout=timeout)
