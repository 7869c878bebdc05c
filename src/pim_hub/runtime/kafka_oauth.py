"""OAUTHBEARER token providers the hub runs itself: Amazon MSK IAM (the `msk` extra).

librdkafka calls `oauth_cb` whenever it needs a token; aiokafka (the mutator's Faust client)
awaits a token provider's `token()`. Both get their token from the same signer, so the
confluent clients and the mutator authenticate alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka.abc import AbstractTokenProvider

MSK_EXTRA_HINT = "Amazon MSK IAM needs the `msk` extra: pip install 'pim-hub[msk]'"


def _signer() -> Any:
    try:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    except ImportError as exc:  # the optional extra is missing: say which
        raise RuntimeError(MSK_EXTRA_HINT) from exc
    return MSKAuthTokenProvider


def msk_iam_token(region: str) -> tuple[str, float]:
    """A signed MSK IAM token and its expiry in seconds since the epoch.

    The signer takes its AWS credentials where boto3 does (environment, profile, the pod's
    or instance's role).
    """
    token, expiry_ms = _signer().generate_auth_token(region)
    return str(token), float(expiry_ms) / 1000.0


def msk_iam_oauth_cb(region: str) -> Callable[[str | None], tuple[str, float]]:
    """librdkafka's `oauth_cb` for MSK IAM: (token, expiry in epoch seconds)."""
    _signer()  # fail at client creation, not at the first token refresh

    def oauth_cb(_config: str | None) -> tuple[str, float]:
        return msk_iam_token(region)

    return oauth_cb


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's token provider for MSK IAM."""

    def __init__(self, region: str) -> None:
        _signer()
        self.region = region

    async def token(self) -> str:
        """A fresh token; the signer's network call runs off the event loop."""
        token, _expiry = await asyncio.to_thread(msk_iam_token, self.region)
        return token

    def extensions(self) -> dict[str, str]:
        """No SASL extensions for MSK."""
        return {}


class OidcTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's token provider for OAUTHBEARER with OIDC (client credentials).

    What librdkafka does for `sasl.oauthbearer.method=oidc`, for the mutator's client: the
    client id and secret go as HTTP basic auth to the token endpoint with
    `grant_type=client_credentials` (and the scope when set); the token is reused until a
    minute before it expires.
    """

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, scope: str | None = None
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self._token: str | None = None
        self._expires_at = 0.0

    async def token(self) -> str:
        """A valid access token, fetched again when the cached one is about to expire."""
        import time

        import httpx

        if self._token is not None and time.time() < self._expires_at - 60:
            return self._token
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(
                self.token_url, data=form, auth=(self.client_id, self.client_secret)
            )
        if resp.status_code != 200:
            raise RuntimeError(
                f"the token endpoint {self.token_url} answered {resp.status_code}: "
                f"{resp.text[:200]}"
            )
        body = resp.json()
        self._token = str(body["access_token"])
        self._expires_at = time.time() + float(body.get("expires_in", 300))
        return self._token

    def extensions(self) -> dict[str, str]:
        """No SASL extensions."""
        return {}
