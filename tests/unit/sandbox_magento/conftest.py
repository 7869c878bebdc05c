"""Fixtures for the Magento sandbox tests: one spec load per session, a fresh app per test."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette 1.x warns at import that TestClient should move to httpx2; not our concern here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from pim_hub.sandbox.magento import FaultConfig, MagentoState, SandboxConfig, create_app, load_spec
from pim_hub.sandbox.magento.spec import MagentoSpec

ADMIN = {"username": "admin", "password": "secret-pass"}
INTEGRATION_TOKEN = "integration-token-123"


@dataclass
class FakeClock:
    """A settable clock for token expiry and bulk delays."""

    now: float = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sandbox:
    """A sandbox app with its state, client and helpers."""

    client: TestClient
    state: MagentoState
    clock: FakeClock
    app: Any
    headers: dict[str, str] = field(default_factory=dict)

    def token(self) -> str:
        response = self.client.post("/rest/V1/integration/admin/token", json=ADMIN)
        assert response.status_code == 200, response.text
        token: str = response.json()
        return token

    def login(self) -> None:
        self.headers = {"Authorization": f"Bearer {self.token()}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers, **kw)

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers=self.headers)

    def put(self, path: str, body: Any) -> Any:
        return self.client.put(path, json=body, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(path, headers=self.headers)

    def product(self, sku: str, store: str | None = None, **fields: Any) -> Any:
        prefix = f"/rest/{store}" if store else "/rest"
        return self.post(f"{prefix}/V1/products", {"product": {"sku": sku, **fields}})


@pytest.fixture(scope="session")
def spec() -> MagentoSpec:
    return load_spec()


def make_sandbox(
    spec: MagentoSpec,
    *,
    config: SandboxConfig | None = None,
    faults: FaultConfig | None = None,
    lifetime: float = 3600.0,
) -> Sandbox:
    clock = FakeClock()
    state = MagentoState(config, clock=clock)
    app = create_app(
        state,
        admin_user=ADMIN["username"],
        admin_password=ADMIN["password"],
        integration_token=INTEGRATION_TOKEN,
        admin_token_lifetime=lifetime,
        faults=faults,
        # Every test doubles as a contract check of the sandbox's own responses.
        validate_responses=True,
    )
    return Sandbox(TestClient(app), state, clock, app)


@pytest.fixture
def sandbox(spec: MagentoSpec) -> Iterator[Sandbox]:
    box = make_sandbox(spec)
    box.login()
    yield box
    assert box.app.state.sandbox.response_violations == []
