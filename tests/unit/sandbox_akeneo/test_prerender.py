"""Pre-rendered product pages, fast counts and the `updated` cache give the same answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.testclient import TestClient

from pim_hub.sandbox.akeneo.app import create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from tests.unit.sandbox_akeneo.conftest import CREDENTIALS, TOKEN_URL

PRODUCTS = 230
LIST = "/api/rest/v1/products-uuid"


def _client(catalogue: Catalogue, **kw: Any) -> TestClient:
    client = TestClient(create_app(catalogue, **CREDENTIALS, **kw))
    grant = {
        "grant_type": "password",
        "username": CREDENTIALS["username"],
        "password": CREDENTIALS["password"],
    }
    token = client.post(
        TOKEN_URL, auth=(CREDENTIALS["client_id"], CREDENTIALS["secret"]), json=grant
    ).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _walk(client: TestClient, search: str | None = None) -> list[bytes]:
    first = f"{LIST}?pagination_type=search_after&limit=100"
    url: str | None = f"{first}&search={search}" if search else first
    bodies = []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        bodies.append(response.content)
        nxt = response.json()["_links"].get("next")
        url = nxt["href"] if nxt else None
    return bodies


def _edit(catalogue: Catalogue) -> None:
    catalogue.update_product(catalogue.product_uuid(5), enabled=False)
    catalogue.delete_product(catalogue.product_uuid(7))
    model = next(catalogue.iter_model_codes())
    value = [{"locale": "en_US", "scope": "ecommerce", "data": "<p>edited</p>"}]
    catalogue.update_product_model(model, values={"description": value})


def _pair(
    edit: Callable[[Catalogue], None] | None, search: str | None
) -> tuple[list[bytes], list[bytes]]:
    generated, rendered = Catalogue(PRODUCTS, seed=3), Catalogue(PRODUCTS, seed=3)
    plain = _client(generated)
    fast = _client(rendered, prerender=True, base_url="http://elsewhere:1")
    if edit is not None:
        edit(generated)
        edit(rendered)
    return _walk(plain, search), _walk(fast, search)


def test_prerendered_pages_are_byte_identical_to_generated_ones() -> None:
    search = orjson.dumps({"updated": [{"operator": "<", "value": "2024-01-01 00:00:00"}]})
    generated, rendered = _pair(None, search.decode())
    assert len(generated) >= 2
    assert generated == rendered
    # Links name the address the client used, not the one given at render time.
    assert b"http://testserver/api/rest/v1/media-files/" in rendered[0]
    assert b"elsewhere" not in b"".join(rendered)


def test_prerendered_pages_follow_edits_made_after_rendering() -> None:
    generated, rendered = _pair(_edit, None)
    assert generated == rendered
    items = [i for body in rendered for i in orjson.loads(body)["_embedded"]["items"]]
    fresh = Catalogue(PRODUCTS, seed=3)
    assert len(items) == PRODUCTS - 1
    assert all(i["uuid"] != fresh.product_uuid(7) for i in items)
    edited = next(i for i in items if i["uuid"] == fresh.product_uuid(5))
    assert edited["enabled"] is False
    assert any(
        e["data"] == "<p>edited</p>" for i in items for e in i["values"].get("description", [])
    )


def _count(client: TestClient, search: dict[str, Any]) -> int:
    params: dict[str, str | int] = {
        "search": orjson.dumps(search).decode(),
        "with_count": "true",
        "limit": 1,
    }
    count: int = client.get(LIST, params=params).json()["items_count"]
    return count


def test_counts_match_walking_the_filtered_list() -> None:
    catalogue = Catalogue(PRODUCTS, seed=5)
    client = _client(catalogue)
    _edit(catalogue)
    for search in (
        {},
        {"updated": [{"operator": "<", "value": "2023-09-01 00:00:00"}]},
        {
            "updated": [
                {"operator": ">", "value": "2023-06-01 00:00:00"},
                {"operator": "<", "value": "2024-01-01 00:00:00"},
            ]
        },
        {"enabled": [{"operator": "=", "value": True}]},
    ):
        walked = [
            item
            for body in _walk(client, orjson.dumps(search).decode() if search else None)
            for item in orjson.loads(body)["_embedded"]["items"]
        ]
        assert _count(client, search) == len(walked)


def test_cached_updated_follows_edits_of_products_and_models() -> None:
    catalogue = Catalogue(PRODUCTS, seed=5)
    before = [catalogue.effective_updated(n) for n in range(PRODUCTS)]
    assert before == [catalogue._effective_updated(n) for n in range(PRODUCTS)]
    change = catalogue.update_product(catalogue.product_uuid(3), enabled=False)
    assert catalogue.effective_updated(3) == change.at > before[3]
    model = next(catalogue.iter_model_codes())
    value = [{"locale": "en_US", "scope": "ecommerce", "data": "<p>x</p>"}]
    edited = catalogue.update_product_model(model, values={"description": value})
    variants = [n for n in range(PRODUCTS) if (catalogue.product_at(n) or {}).get("parent")]
    moved = [n for n in variants if catalogue.effective_updated(n) == edited.at]
    assert moved  # the model's variants now match an `updated` filter after the edit
    assert all(catalogue.effective_updated(n) >= before[n] for n in range(PRODUCTS) if n != 3)
