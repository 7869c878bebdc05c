"""Control route of a running sandbox: edit its catalogue and send the signed webhooks."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pim_hub.sandbox.akeneo.catalogue import Catalogue, Change
from pim_hub.sandbox.akeneo.webhooks import (
    MAX_LEGACY_EVENTS,
    SignedWebhook,
    apost_webhook,
    event_platform_webhook,
    legacy_webhook,
)

EMIT_PATH = "/sandbox/v1/emit"
MAX_EDITS = 1000


def _error(message: str) -> Response:
    return Response(orjson.dumps({"error": message}), 422, media_type="application/json")


def webhooks_for(
    changes: list[Change],
    kind: str,
    secret: str,
    secondary: str | None = None,
    delta: bool = False,
) -> list[SignedWebhook]:
    """The requests Akeneo would send for these edits (Events API: batches of 10)."""
    if kind == "events-api":
        return [
            legacy_webhook(changes[i : i + MAX_LEGACY_EVENTS], secret=secret)
            for i in range(0, len(changes), MAX_LEGACY_EVENTS)
        ]
    return [
        event_platform_webhook(c, primary_secret=secret, secondary_secret=secondary, delta=delta)
        for c in changes
    ]


def control_routes(catalogue: Catalogue) -> list[Route]:
    """`POST /sandbox/v1/emit`: make random edits and deliver their webhooks to a URL.

    Body: `{"url": ..., "kind": "events-api"|"event-platform", "secret": ...,
    "secondary_secret": null, "count": 10, "delta": false, "seed": 0}`. Answers the edits
    made (entity keys and actions) and the status codes the receiver gave.
    """

    async def emit(request: Request) -> Response:
        try:
            body: Any = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error("body is not JSON")
        if not isinstance(body, dict):
            return _error("body must be an object")
        url, kind, secret = body.get("url"), body.get("kind", "events-api"), body.get("secret")
        count = body.get("count", 10)
        if not isinstance(url, str) or not isinstance(secret, str):
            return _error("'url' and 'secret' are required strings")
        if kind not in ("events-api", "event-platform"):
            return _error("'kind' must be events-api or event-platform")
        if not isinstance(count, int) or not 1 <= count <= MAX_EDITS:
            return _error(f"'count' must be an integer from 1 to {MAX_EDITS}")
        rng = random.Random(body.get("seed"))
        changes = [catalogue.random_edit(rng) for _ in range(count)]
        hooks = webhooks_for(
            changes, kind, secret, body.get("secondary_secret"), bool(body.get("delta"))
        )
        statuses: Counter[str] = Counter()
        async with httpx.AsyncClient() as client:
            for hook in hooks:
                try:
                    resp = await apost_webhook(url, hook, client=client)
                    statuses[str(resp.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
        edits = [{"entity": c.entity, "action": c.action, "key": c.key} for c in changes]
        return Response(
            orjson.dumps({"edits": edits, "requests": len(hooks), "statuses": statuses}),
            media_type="application/json",
        )

    return [Route(EMIT_PATH, emit, methods=["POST"])]
