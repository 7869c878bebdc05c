"""Webhook signature checks for the Events API and the Event Platform (constant-time)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from pim_hub.schemas.errors import PermanentError


class BadSignature(PermanentError):
    """The request is not signed by a secret we know (answered 401)."""


#: Unix seconds as Akeneo sends them: ASCII digits only, and few enough that the number fits
#: a float (a 400-digit stamp raised OverflowError, answered 500).
_STAMP = re.compile(r"[0-9]{1,12}")


def _hmac_hex(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode()


def _given(signature: str) -> bytes:
    # compare_digest takes str of ASCII only (TypeError otherwise, answered 500); bytes of
    # anything. A header of other characters simply does not match.
    return signature.strip().lower().encode("utf-8", errors="replace")


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
    if not _STAMP.fullmatch(timestamp):
        raise BadSignature("timestamp is not unix seconds")
    stamp = int(timestamp)
    # A replayed request keeps its old timestamp: refuse it (small allowance for clock skew).
    if abs(now - stamp) > tolerance_s:
        raise BadSignature("timestamp outside the accepted window")
    message = f"{timestamp}.".encode() + body
    given = _given(signature)
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
    given = [_given(s) for s in signatures if s]
    if not given:
        raise BadSignature("missing signature header")
    expected = [_hmac_hex(secret, body) for secret in secrets]
    matched = False
    for g in given:
        for e in expected:
            matched |= hmac.compare_digest(e, g)
    if not matched:
        raise BadSignature("signature does not match")
