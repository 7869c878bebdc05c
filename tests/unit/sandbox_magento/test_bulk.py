"""Tests of the async bulk API and its status endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from pim_hub.sandbox.magento import SandboxConfig
from pim_hub.sandbox.magento.spec import MagentoSpec

from .conftest import Sandbox, make_sandbox


def test_bulk_products_complete(sandbox: Sandbox) -> None:
    items = [{"product": {"sku": f"B-{i}", "name": f"Bulk {i}", "price": 1.0}} for i in range(3)]
    accepted = sandbox.post("/rest/all/async/bulk/V1/products", items)
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["errors"] is False
    assert [r["status"] for r in body["request_items"]] == ["accepted"] * 3
    assert all(len(r["data_hash"]) == 64 for r in body["request_items"])
    status = sandbox.get(f"/rest/V1/bulk/{body['bulk_uuid']}/status").json()
    assert status["operation_count"] == 3
    assert [op["status"] for op in status["operations_list"]] == [1, 1, 1]
    assert set(sandbox.state.products) == {"B-0", "B-1", "B-2"}
    count = sandbox.get(f"/rest/V1/bulk/{body['bulk_uuid']}/operation-status/1").json()
    assert count == 3


def test_invalid_bulk_items_are_rejected_and_failed_ones_reported(sandbox: Sandbox) -> None:
    sandbox.product("TAKEN", name="Shoe")
    items = [
        {"product": {"sku": "OK", "name": "Fine"}},
        {"product": {"sku": "BAD", "price": "x"}},
        {"product": {"sku": "CLASH", "name": "Shoe"}},
    ]
    body = sandbox.post("/rest/async/bulk/V1/products", items).json()
    assert body["errors"] is True
    assert [r["status"] for r in body["request_items"]] == ["accepted", "rejected", "accepted"]
    assert "product.price" in body["request_items"][1]["error_message"]
    detailed = sandbox.get(f"/rest/V1/bulk/{body['bulk_uuid']}/detailed-status").json()
    assert [op["status"] for op in detailed["operations_list"]] == [1, 5, 3]
    assert (
        detailed["operations_list"][2]["result_message"]
        == "URL key for specified store already exists."
    )
    assert detailed["operations_list"][0]["topic_name"].endswith(
        "productrepositoryinterface.save.post"
    )


def test_bulk_put_by_sku_updates_a_store_view(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe")
    items = [{"sku": "SKU-1", "product": {"sku": "SKU-1", "name": "Chaussure"}}]
    accepted = sandbox.put("/rest/fr/async/bulk/V1/products/bySku", items)
    assert accepted.status_code == 202
    assert sandbox.state.product_values("SKU-1")["fr"] == {"name": "Chaussure"}


def test_bulk_operations_stay_open_until_their_delay_passes(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, config=SandboxConfig(bulk_delay=5.0))
    box.login()
    uuid = box.post("/rest/async/bulk/V1/products", [{"product": {"sku": "L-1"}}]).json()[
        "bulk_uuid"
    ]
    assert box.get(f"/rest/V1/bulk/{uuid}/status").json()["operations_list"][0]["status"] == 4
    box.clock.now += 6
    assert box.get(f"/rest/V1/bulk/{uuid}/status").json()["operations_list"][0]["status"] == 1


def test_bulk_waits_for_the_consumer_when_not_automatic(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, config=SandboxConfig(bulk_auto=False))
    box.login()
    uuid = box.post("/rest/async/bulk/V1/products", [{"product": {"sku": "Q-1"}}]).json()[
        "bulk_uuid"
    ]
    box.clock.now += 600
    assert box.get(f"/rest/V1/bulk/{uuid}/status").json()["operations_list"][0]["status"] == 4
    assert box.state.run_bulk_consumer() == 1
    assert "Q-1" in box.state.products


def test_bulk_body_must_be_a_list_and_uuid_must_exist(sandbox: Sandbox) -> None:
    response = sandbox.post("/rest/async/bulk/V1/products", {"product": {"sku": "X"}})
    assert response.status_code == 400
    missing = sandbox.get("/rest/V1/bulk/not-a-bulk/status")
    assert missing.status_code == 404
    assert missing.json()["parameters"] == {"bulkUuid": "not-a-bulk"}


def test_single_async_request_is_a_one_item_bulk(sandbox: Sandbox) -> None:
    response = sandbox.post("/rest/async/V1/products", {"product": {"sku": "A-1"}})
    assert response.status_code == 202
    assert len(response.json()["request_items"]) == 1
    assert "A-1" in sandbox.state.products


def test_small_requests_are_answered_while_a_bulk_is_validated(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Magento serves requests side by side; the sandbox lets others in between bulk items.
    items = [{"product": {"sku": f"L-{i}", "name": f"Large {i}"}} for i in range(20)]
    transport = httpx.ASGITransport(app=sandbox.app)
    pipeline = sandbox.app.state.sandbox
    check = pipeline._check_item
    events: list[str] = []
    started = asyncio.Event()

    def checking(*args: Any) -> Any:
        events.append("item")
        started.set()
        return check(*args)

    monkeypatch.setattr(pipeline, "_check_item", checking)

    async def send(method: str, path: str, body: Any = None) -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://m") as client:
            response = await client.request(method, path, json=body, headers=sandbox.headers)
            assert response.status_code < 300, response.text

    async def small() -> None:
        await started.wait()
        await send("GET", "/rest/V1/store/storeViews")
        events.append("small")

    async def both() -> None:
        await asyncio.gather(send("POST", "/rest/all/async/bulk/V1/products", items), small())

    asyncio.run(both())
    assert events.count("item") == 20
    assert events.index("small") < len(events) - 1  # answered before the bulk's last item
    assert len(sandbox.state.products) == 20
