"""Fixtures for the Akeneo sandbox tests: catalogue, app, authenticated client, spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from pim_hub.sandbox.akeneo.app import FaultConfig, create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from tests.spec_validation import SPECS_DIR, SwaggerDocument

CREDENTIALS: dict[str, Any] = {
    "client_id": "client_abc",
    "secret": "s3cret",
    "username": "api_user",
    "password": "api_pass",
}
TOKEN_URL = "/api/oauth/v1/token"


class FakeClock:
    """A settable seconds clock so token expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def spec() -> SwaggerDocument:
    # values[].data is typed "object" in the document but holds any JSON type.
    return SwaggerDocument.load(
        SPECS_DIR / "akeneo" / "akeneo-web-api.json", any_type_properties={"data"}
    )


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue(250, seed=11)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(catalogue: Catalogue, clock: FakeClock) -> Starlette:
    return create_app(
        catalogue, **CREDENTIALS, faults=FaultConfig(seed=3), token_lifetime=60, clock=clock
    )


def password_grant(client: TestClient) -> dict[str, object]:
    response = client.post(
        TOKEN_URL,
        json={
            "grant_type": "password",
            "username": CREDENTIALS["username"],
            "password": CREDENTIALS["password"],
        },
        auth=(CREDENTIALS["client_id"], CREDENTIALS["secret"]),
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://akeneo.test") as anonymous:
        token = password_grant(anonymous)["access_token"]
        anonymous.headers["Authorization"] = f"Bearer {token}"
        yield anonymous
