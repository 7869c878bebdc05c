"""Tests of admin tokens, integration bearer tokens and the 401 shape."""

from __future__ import annotations

from pim_hub.sandbox.magento.spec import MagentoSpec

from .conftest import INTEGRATION_TOKEN, Sandbox, make_sandbox

UNAUTHORIZED = "The consumer isn't authorized to access %resources."


def test_admin_token_is_a_json_string_that_opens_the_api(sandbox: Sandbox) -> None:
    token = sandbox.token()
    assert len(token) == 32
    response = sandbox.client.get(
        "/rest/V1/store/storeViews", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200


def test_wrong_password_is_refused_with_magento_message(sandbox: Sandbox) -> None:
    response = sandbox.client.post(
        "/rest/V1/integration/admin/token", json={"username": "admin", "password": "nope"}
    )
    assert response.status_code == 401
    assert response.json()["message"].startswith("The account sign-in was incorrect")


def test_token_request_without_password_is_a_400(sandbox: Sandbox) -> None:
    response = sandbox.client.post("/rest/V1/integration/admin/token", json={"username": "admin"})
    assert response.status_code == 400
    assert response.json() == {
        "message": '"%fieldName" is required. Enter and try again.',
        "parameters": {"fieldName": "password"},
    }


def test_missing_token_gets_401_naming_the_acl_resource(sandbox: Sandbox) -> None:
    response = sandbox.client.get("/rest/V1/products/ANY")
    assert response.status_code == 401
    assert response.json() == {
        "message": UNAUTHORIZED,
        "parameters": {"resources": "Magento_Catalog::products"},
    }
    categories = sandbox.client.get("/rest/V1/categories/2", headers={"Authorization": "Bearer x"})
    assert categories.json()["parameters"] == {"resources": "Magento_Catalog::categories"}


def test_admin_token_expires_after_its_lifetime(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, lifetime=60)
    box.login()
    assert box.get("/rest/V1/store/websites").status_code == 200
    box.clock.now += 61
    expired = box.get("/rest/V1/store/websites")
    assert expired.status_code == 401
    assert expired.json()["message"] == UNAUTHORIZED
    box.login()
    assert box.get("/rest/V1/store/websites").status_code == 200


def test_zero_lifetime_makes_every_admin_token_fail(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, lifetime=0)
    box.login()
    assert box.get("/rest/V1/store/websites").status_code == 401


def test_revoked_tokens_stop_working(sandbox: Sandbox) -> None:
    sandbox.state.revoke_tokens()
    assert sandbox.get("/rest/V1/store/websites").status_code == 401


def test_integration_token_is_accepted_as_bearer(sandbox: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {INTEGRATION_TOKEN}"}
    response = sandbox.client.post(
        "/rest/async/bulk/V1/products", json=[{"product": {"sku": "I-1"}}], headers=headers
    )
    assert response.status_code == 202
    status = sandbox.get(f"/rest/V1/bulk/{response.json()['bulk_uuid']}/status").json()
    assert status["user_type"] == 1  # integration
