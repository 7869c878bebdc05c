"""OpenID Connect sign-in (authorization code flow with PKCE) for the console.

The ID token comes straight from the provider's token endpoint over the connection the console
opened, so, as OpenID Connect Core 1.0 section 3.1.3.7 allows for this flow, its issuer is
vouched for by that connection (TLS) rather than by checking its signature; its issuer,
audience, expiry and nonce are checked. The issuer must therefore be an https URL (plain http
only on a loopback address, for tests and local providers).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlparse

import httpx
import orjson

from pim_hub.console.settings import ConsoleSettings, Role, is_loopback
from pim_hub.schemas.errors import PermanentError


class OidcError(PermanentError):
    """The provider's answer cannot sign anyone in (the message says why)."""


@dataclass(frozen=True)
class Provider:
    """The endpoints of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str


@dataclass(frozen=True)
class Attempt:
    """What the console keeps in the session between the redirect and the callback."""

    state: str
    nonce: str
    verifier: str

    def as_session(self) -> dict[str, str]:
        """For the session cookie (signed)."""
        return {"state": self.state, "nonce": self.nonce, "verifier": self.verifier}


def check_issuer(issuer: str) -> None:
    """https, or http on a loopback address only."""
    url = urlparse(issuer)
    if url.scheme == "https" or (url.scheme == "http" and is_loopback(url.hostname or "")):
        return
    raise OidcError(f"the OIDC issuer {issuer!r} must be an https URL")


def discover(issuer: str, timeout_s: float = 10.0) -> Provider:
    """Read `/.well-known/openid-configuration` of the issuer."""
    check_issuer(issuer)
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
        doc = response.json()
        provider = Provider(doc["issuer"], doc["authorization_endpoint"], doc["token_endpoint"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise OidcError(f"cannot read the OIDC discovery document {url}: {exc}") from exc
    if provider.issuer.rstrip("/") != issuer.rstrip("/"):
        raise OidcError(f"the discovery document names issuer {provider.issuer!r}, not {issuer!r}")
    return provider


def start(settings: ConsoleSettings, provider: Provider, redirect_uri: str) -> tuple[str, Attempt]:
    """The provider URL to send the browser to, and what to remember until the callback."""
    attempt = Attempt(
        secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    )
    challenge = _b64(hashlib.sha256(attempt.verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.oidc_client_id or "",
            "redirect_uri": redirect_uri,
            "scope": settings.oidc_scopes,
            "state": attempt.state,
            "nonce": attempt.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{provider.authorization_endpoint}?{query}", attempt


def finish(
    settings: ConsoleSettings,
    provider: Provider,
    attempt: Attempt,
    code: str,
    redirect_uri: str,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Trade the code for tokens and return the checked ID token's claims."""
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else ""
    try:
        response = httpx.post(
            provider.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": settings.oidc_client_id or "",
                "client_secret": secret,
                "code_verifier": attempt.verifier,
            },
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        raise OidcError(f"the token endpoint did not answer: {exc}") from exc
    if response.status_code != 200:
        raise OidcError(f"the token endpoint refused the code ({response.status_code})")
    try:
        id_token = response.json()["id_token"]
        claims: dict[str, Any] = orjson.loads(_unb64(id_token.split(".")[1]))
    except (ValueError, KeyError, IndexError, TypeError, orjson.JSONDecodeError) as exc:
        raise OidcError(f"the token endpoint gave no usable ID token: {exc}") from exc
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != provider.issuer:
        raise OidcError("the ID token is from another issuer")
    if settings.oidc_client_id not in audiences:
        raise OidcError("the ID token is for another client")
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time() - 60:
        raise OidcError("the ID token has expired")
    if claims.get("nonce") != attempt.nonce:
        raise OidcError("the ID token's nonce does not match this sign-in")
    return claims


def user_of(settings: ConsoleSettings, claims: dict[str, Any]) -> tuple[str, Role | None]:
    """The user name and role the claims give (None: not allowed in)."""
    name = str(claims.get(settings.oidc_username_claim) or claims.get("sub") or "")
    raw = claims.get(settings.oidc_roles_claim) or []
    values = {str(v) for v in (raw if isinstance(raw, list) else [raw])}
    if values & set(settings.oidc_operator_values):
        return name, "operator"
    if not settings.oidc_viewer_values or values & set(settings.oidc_viewer_values):
        return name, "viewer"
    return name, None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
