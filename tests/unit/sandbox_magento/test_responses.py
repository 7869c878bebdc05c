"""Every response of the main endpoints validates against the document's response schema."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from pim_hub.sandbox.magento import create_app, running_server
from pim_hub.sandbox.magento.spec import ASYNC_RESPONSE_SCHEMA, MagentoSpec

from .conftest import ADMIN, Sandbox

PNG = base64.b64encode(b"\x89PNG-bytes").decode()


def scenario(sandbox: Sandbox) -> list[tuple[str, str, Any]]:
    """Drive the main endpoints; returns (method, template, response) triples."""
    calls: list[tuple[str, str, Any]] = []

    def record(method: str, template: str, response: Any) -> None:
        calls.append((method, template, response))

    red = sandbox.post(
        "/rest/V1/products/attributes/color/options", {"option": {"label": "Red", "value": ""}}
    )
    record("POST", "/V1/products/attributes/{attributeCode}/options", red)
    record(
        "GET",
        "/V1/products/attributes/{attributeCode}/options",
        sandbox.get("/rest/V1/products/attributes/color/options"),
    )
    record(
        "GET",
        "/V1/products/attributes/{attributeCode}",
        sandbox.get("/rest/V1/products/attributes/color"),
    )
    category = sandbox.post("/rest/V1/categories", {"category": {"name": "Shoes", "parent_id": 2}})
    record("POST", "/V1/categories", category)
    cid = category.json()["id"]
    record(
        "PUT",
        "/V1/categories/{id}",
        sandbox.put(f"/rest/fr/V1/categories/{cid}", {"category": {"name": "Chaussures"}}),
    )
    record("GET", "/V1/categories/{categoryId}", sandbox.get(f"/rest/V1/categories/{cid}"))
    record("GET", "/V1/categories", sandbox.get("/rest/V1/categories"))
    record(
        "PUT",
        "/V1/categories/{categoryId}/move",
        sandbox.put(f"/rest/V1/categories/{cid}/move", {"parentId": 2}),
    )
    product = {
        "sku": "TEE",
        "name": "Tee",
        "type_id": "configurable",
        "price": 10.0,
        "extension_attributes": {"category_links": [{"category_id": str(cid), "position": 1}]},
        "custom_attributes": [{"attribute_code": "description", "value": "Cotton"}],
    }
    record("POST", "/V1/products", sandbox.post("/rest/all/V1/products", {"product": product}))
    child = {
        "sku": "TEE-RED",
        "name": "Tee red",
        "visibility": 1,
        "custom_attributes": [{"attribute_code": "color", "value": red.json()}],
    }
    record(
        "PUT",
        "/V1/products/{sku}",
        sandbox.put("/rest/all/V1/products/TEE-RED", {"product": child}),
    )
    record(
        "PUT",
        "/V1/products/{sku}",
        sandbox.put("/rest/fr/V1/products/TEE", {"product": {"sku": "TEE", "name": "T"}}),
    )
    record("GET", "/V1/products/{sku}", sandbox.get("/rest/fr/V1/products/TEE"))
    record(
        "GET",
        "/V1/products",
        sandbox.get("/rest/V1/products", params={"searchCriteria[pageSize]": "10"}),
    )
    option = {
        "attribute_id": "93",
        "label": "Color",
        "position": 0,
        "is_use_default": True,
        "values": [{"value_index": int(red.json())}],
    }
    record(
        "POST",
        "/V1/configurable-products/{sku}/options",
        sandbox.post("/rest/V1/configurable-products/TEE/options", {"option": option}),
    )
    record(
        "POST",
        "/V1/configurable-products/{sku}/child",
        sandbox.post("/rest/V1/configurable-products/TEE/child", {"childSku": "TEE-RED"}),
    )
    record(
        "GET",
        "/V1/configurable-products/{sku}/children",
        sandbox.get("/rest/V1/configurable-products/TEE/children"),
    )
    record(
        "GET",
        "/V1/configurable-products/{sku}/options/all",
        sandbox.get("/rest/V1/configurable-products/TEE/options/all"),
    )
    entry = {
        "media_type": "image",
        "label": "Front",
        "position": 1,
        "disabled": False,
        "types": ["image"],
        "content": {"base64_encoded_data": PNG, "type": "image/png", "name": "tee.png"},
    }
    record(
        "POST",
        "/V1/products/{sku}/media",
        sandbox.post("/rest/V1/products/TEE/media", {"entry": entry}),
    )
    record("GET", "/V1/products/{sku}/media", sandbox.get("/rest/V1/products/TEE/media"))
    record("GET", "/V1/store/websites", sandbox.get("/rest/V1/store/websites"))
    record("GET", "/V1/store/storeViews", sandbox.get("/rest/V1/store/storeViews"))
    record("GET", "/V1/store/storeConfigs", sandbox.get("/rest/V1/store/storeConfigs"))
    bulk = sandbox.post(
        "/rest/async/bulk/V1/products", [{"product": {"sku": "B-1"}}, {"product": {}}]
    )
    uuid = bulk.json()["bulk_uuid"]
    record("GET", "/V1/bulk/{bulkUuid}/status", sandbox.get(f"/rest/V1/bulk/{uuid}/status"))
    record(
        "GET",
        "/V1/bulk/{bulkUuid}/detailed-status",
        sandbox.get(f"/rest/V1/bulk/{uuid}/detailed-status"),
    )
    # Error responses are part of the contract too.
    record("GET", "/V1/products/{sku}", sandbox.get("/rest/V1/products/NOPE"))
    record(
        "POST",
        "/V1/products",
        sandbox.post("/rest/V1/products", {"product": {"price": "x", "status": "y"}}),
    )
    record("GET", "/V1/categories/{categoryId}", sandbox.get("/rest/V1/categories/999"))
    record("POST", "/V1/products", sandbox.client.post("/rest/V1/products", json={}))
    record("DELETE", "/V1/products/{sku}", sandbox.delete("/rest/V1/products/TEE-RED"))
    record("DELETE", "/V1/categories/{categoryId}", sandbox.delete(f"/rest/V1/categories/{cid}"))
    return calls


def test_main_endpoint_responses_validate_against_the_document(
    sandbox: Sandbox, spec: MagentoSpec
) -> None:
    calls = scenario(sandbox)
    assert len(calls) == 30
    statuses = set()
    for method, template, response in calls:
        op = spec.operation(method, template)
        problems = spec.validate_response(op, response.status_code, response.json())
        assert problems == [], (method, template, response.status_code, problems)
        statuses.add(response.status_code)
    assert statuses == {200, 400, 401, 404}
    # The document has no async routes; their body follows Magento's AsyncResponseInterface.
    bulk = sandbox.post("/rest/async/bulk/V1/products", [{"product": {"sku": "B-2"}}])
    assert spec.validate_schema(ASYNC_RESPONSE_SCHEMA, bulk.json()) == []


def test_unknown_route_body_is_a_valid_error_response(sandbox: Sandbox, spec: MagentoSpec) -> None:
    body = sandbox.get("/rest/V1/nowhere").json()
    assert spec.validate_response(None, 404, body) == []


def test_sandbox_served_over_http_in_a_thread(spec: MagentoSpec) -> None:
    app = create_app(admin_user=ADMIN["username"], admin_password=ADMIN["password"])
    with running_server(app) as base_url, httpx.Client(base_url=base_url, timeout=5) as client:
        token = client.post("/rest/V1/integration/admin/token", json=ADMIN).json()
        headers = {"Authorization": f"Bearer {token}"}
        created = client.post(
            "/rest/V1/products", json={"product": {"sku": "HTTP-1", "name": "n"}}, headers=headers
        )
        assert created.status_code == 200
        assert app.state.magento.product_view("HTTP-1")["name"] == "n"
