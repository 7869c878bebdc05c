"""Authentication of Magento REST calls: admin token, integration Bearer, OAuth 1.0a HMAC-SHA256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit


def _enc(value: str) -> str:
    # RFC 5849 3.6: percent-encode everything but unreserved characters.
    return quote(value, safe="-._~")


def oauth1_signature_base(method: str, url: str, params: dict[str, str]) -> str:
    """The OAuth 1.0a signature base string (RFC 5849 3.4.1) of a request.

    Args:
        method: HTTP method.
        url: the full request URL; its query parameters are part of the signature.
        params: the `oauth_*` protocol parameters (without `oauth_signature`).
    """
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    port = parts.port
    netloc = (
        host
        if port is None or (scheme, port) in (("http", 80), ("https", 443))
        else f"{host}:{port}"
    )
    base_url = urlunsplit((scheme, netloc, parts.path or "/", "", ""))
    pairs = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    normalised = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in pairs))
    return "&".join([method.upper(), _enc(base_url), _enc(normalised)])


def oauth1_header(
    method: str,
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """The `Authorization: OAuth ...` header of one request, signed with HMAC-SHA256.

    JSON bodies are not part of the signature (only form bodies would be), as Magento expects.
    """
    params = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "oauth_token": token,
        "oauth_version": "1.0",
    }
    key = f"{_enc(consumer_secret)}&{_enc(token_secret)}".encode()
    base = oauth1_signature_base(method, url, params).encode()
    signature = base64.b64encode(hmac.new(key, base, hashlib.sha256).digest()).decode()
    params["oauth_signature"] = signature
    return "OAuth " + ", ".join(f'{k}="{_enc(v)}"' for k, v in params.items())


Signer = Callable[[str, str], dict[str, str]]
