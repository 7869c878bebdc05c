"""Webhook signature checks for the Events API and the Event Platform (constant-time)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from pim_hub.schemas.errors import PermanentError


class BadSignature(PermanentError):
    """The request is not signed by a secret we know (answered 401)."""


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_legacy(
    secrets: Iterable[str],
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now: float,
    tolerance_s: float = 300.0,
) -> None:
    """Events API: hex HMAC-SHA256 of "<timestamp>.<raw body>", timestamp within tolerance.

    Raises:
        BadSignature: missing headers, stale or future timestamp, or no secret matches.
    """
    if not signature or not timestamp:
        raise BadSignature("missing signature or timestamp header")
    try:
        stamp = int(timestamp)
    except ValueError as exc:
        raise BadSignature("timestamp is not unix seconds") from exc
    # A replayed request keeps its old timestamp: refuse it (small allowance for clock skew).
    if abs(now - stamp) > tolerance_s:
        raise BadSignature("timestamp outside the accepted window")
    message = f"{timestamp}.".encode() + body
    given = signature.strip().lower()
    matched = False
    for secret in secrets:
        # Check every secret, so the time taken does not reveal which one matched.
        matched |= hmac.compare_digest(_hmac_hex(secret, message), given)
    if not matched:
        raise BadSignature("signature does not match")


def verify_event_platform(
    secrets: Iterable[str], signatures: Iterable[str | None], body: bytes
) -> None:
    """Event Platform: hex HMAC-SHA256 of the raw body in the PRIMARY or SECONDARY header.

    Any of our secrets (current and next, while rotating) may match any header given.

    Raises:
        BadSignature: no signature header, or none matches.
    """
    given = [s.strip().lower() for s in signatures if s]
    if not given:
        raise BadSignature("missing signature header")
    expected = [_hmac_hex(secret, body) for secret in secrets]
    matched = False
    for g in given:
        for e in expected:
            matched |= hmac.compare_digest(e, g)
    if not matched:
        raise BadSignature("signature does not match")
