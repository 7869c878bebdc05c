"""OIDC sign-in against a provider of the test's own (a small Starlette app on loopback that
implements discovery, the authorization endpoint and the token endpoint with PKCE)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import orjson
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from pim_hub.console.app import create_app
from pim_hub.console.oidc import OidcError, check_issuer
from pim_hub.console.settings import ConsoleSettings
from pim_hub.devstack.embedded import free_port
from pim_hub.runtime.settings import Settings

CLIENT_ID, CLIENT_SECRET = "hub-console", "client-secret-1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class FakeProvider:
    """Signs in whoever `next_user` says, with the groups given."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.next_user: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.tamper: dict[str, Any] = {}  # claims to overwrite in the next ID token
        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
            }
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        assert q["client_id"] == CLIENT_ID and q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(8)
        self.codes[code] = {
            "nonce": q["nonce"],
            "challenge": q["code_challenge"],
            "redirect_uri": q["redirect_uri"],
        }
        target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        return RedirectResponse(target, 302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = self.codes.pop(str(form["code"]), None)
        if grant is None or form["client_secret"] != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_grant"}, 400)
        verifier = str(form["code_verifier"]).encode()
        if _b64(hashlib.sha256(verifier).digest()) != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "why": "pkce"}, 400)
        assert form["redirect_uri"] == grant["redirect_uri"]
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "exp": int(time.time()) + 300,
            "nonce": grant["nonce"],
            **self.next_user,
            **self.tamper,
        }
        body = _b64(orjson.dumps(claims))
        return JSONResponse({"id_token": f"{_b64(b'{}')}.{body}.sig", "access_token": "x"})

    def start(self) -> FakeProvider:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    p = FakeProvider().start()
    yield p
    p.stop()


def _client(provider: FakeProvider) -> TestClient:
    cfg = ConsoleSettings(
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=SecretStr(CLIENT_SECRET),
        oidc_operator_values=["hub-operators"],
        oidc_viewer_values=["hub-viewers"],
    )
    return TestClient(create_app(Settings(), cfg))


def _sign_in(client: TestClient, next_path: str = "/") -> Any:
    """Browser steps: console → provider → console callback."""
    to_provider = client.get("/oidc/start", params={"next": next_path}, follow_redirects=False)
    assert to_provider.status_code == 303
    back = httpx.get(to_provider.headers["location"], follow_redirects=False)
    assert back.status_code == 302
    callback = urlparse(back.headers["location"])
    # The test client's response class (httpx's or httpx2's, whichever Starlette uses).
    return client.get(f"{callback.path}?{callback.query}", follow_redirects=False)


def _who(client: TestClient) -> str:
    page = client.get("/runs/none").text  # a page that needs a user and no database
    match = re.search(r'<span class="user">\s*(\S+) <span class="role">(\w+)', page)
    return f"{match.group(1)}:{match.group(2)}" if match else ""


def test_an_operator_and_a_viewer_sign_in_through_the_provider(provider: FakeProvider) -> None:
    with _client(provider) as client:
        page = client.get("/login")
        assert 'id="oidc-sign-in"' in page.text and 'id="login-form"' not in page.text
        assert client.get("/", follow_redirects=False).status_code == 303

        provider.next_user = {"sub": "1", "email": "ana@example.com", "groups": ["hub-operators"]}
        signed = _sign_in(client, "/dead?integration=shop")
        assert signed.status_code == 303 and signed.headers["location"] == "/dead?integration=shop"
        assert _who(client) == "ana@example.com:operator"

    with _client(provider) as client:
        provider.next_user = {"sub": "2", "email": "vic@example.com", "groups": "hub-viewers"}
        assert _sign_in(client).status_code == 303
        assert _who(client) == "vic@example.com:viewer"


def test_sign_in_is_refused_without_a_group_a_matching_state_or_a_valid_token(
    provider: FakeProvider,
) -> None:
    with _client(provider) as client:
        provider.next_user = {"sub": "3", "email": "eve@example.com", "groups": ["sales"]}
        refused = _sign_in(client)
        assert refused.status_code == 403 and "may not use the console" in refused.text
        assert _who(client) == ""

        # A callback the console did not start (no state in the session, or another one).
        forged = client.get("/oidc/callback", params={"code": "x", "state": "y"})
        assert forged.status_code == 403
        provider.next_user = {"sub": "1", "email": "ana@example.com", "groups": ["hub-operators"]}
        start = client.get("/oidc/start", follow_redirects=False)
        back = httpx.get(start.headers["location"], follow_redirects=False)
        query = parse_qs(urlparse(back.headers["location"]).query)
        wrong = client.get("/oidc/callback", params={"code": query["code"][0], "state": "other"})
        assert wrong.status_code == 403 and _who(client) == ""

        for tamper, message in (
            ({"aud": "another-client"}, "another client"),
            ({"iss": "http://127.0.0.1:1"}, "another issuer"),
            ({"exp": int(time.time()) - 3600}, "expired"),
            ({"nonce": "replayed"}, "nonce"),
        ):
            provider.tamper = tamper
            r = _sign_in(client)
            assert r.status_code == 401 and message in r.text, tamper
            assert _who(client) == ""
        provider.tamper = {}
        assert _sign_in(client).status_code == 303 and _who(client).endswith(":operator")


def test_the_issuer_must_be_https_except_on_loopback() -> None:
    check_issuer("https://login.example.com/realms/hub")
    check_issuer("http://127.0.0.1:8080")
    with pytest.raises(OidcError, match="https"):
        check_issuer("http://login.example.com")
