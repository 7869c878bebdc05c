"""The sandbox REST API: schemas, pagination, filters, auth, faults."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from pim_hub.sandbox.akeneo.catalogue import Catalogue
from tests.spec_validation import SwaggerDocument
from tests.unit.sandbox_akeneo.conftest import CREDENTIALS, TOKEN_URL, FakeClock, password_grant

API = "/api/rest/v1"


def walk(client: TestClient, url: str, **params: Any) -> list[dict[str, Any]]:
    """Follow `_links.next` from a first page, returning every page body."""
    pages = []
    # httpx drops a URL's own query string when `params` is given, even empty.
    response = client.get(url, params=params) if params else client.get(url)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        nxt = response.json()["_links"].get("next")
        if nxt is None:
            return pages
        response = client.get(nxt["href"])


def items(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page["_embedded"]["items"]]


# ----------------------------------------------------------------------------- schemas
@pytest.mark.parametrize(
    ("url", "template"),
    [
        (f"{API}/products-uuid?pagination_type=search_after&limit=20", None),
        (f"{API}/products-uuid?limit=20&with_count=true", None),
        (f"{API}/product-models?pagination_type=search_after&limit=20", None),
        (f"{API}/product-models?limit=5", None),
        (f"{API}/categories?with_position=true&limit=100", None),
        (f"{API}/categories/apparel", f"{API}/categories/{{code}}"),
        (f"{API}/families", None),
        (f"{API}/families/clothing", f"{API}/families/{{code}}"),
        (f"{API}/families/clothing/variants", f"{API}/families/{{family_code}}/variants"),
        (
            f"{API}/families/clothing/variants/clothing_color_size",
            f"{API}/families/{{family_code}}/variants/{{code}}",
        ),
        (f"{API}/attributes?limit=100", None),
        (f"{API}/attributes/weight", f"{API}/attributes/{{code}}"),
        (
            f"{API}/attributes/color/options?limit=100",
            f"{API}/attributes/{{attribute_code}}/options",
        ),
        (
            f"{API}/attributes/color/options/red",
            f"{API}/attributes/{{attribute_code}}/options/{{code}}",
        ),
        (f"{API}/channels", None),
        (f"{API}/channels/ecommerce", f"{API}/channels/{{code}}"),
        (f"{API}/locales", None),
        (f"{API}/locales/fr_FR", f"{API}/locales/{{code}}"),
    ],
)
def test_list_and_get_endpoints_match_the_official_schema(
    client: TestClient, spec: SwaggerDocument, url: str, template: str | None
) -> None:
    response = client.get(url)
    assert response.status_code == 200, response.text
    body = response.json()
    spec.validate_response("get", template or url.split("?")[0], 200, body)
    assert body  # a schema-valid empty object would prove nothing
    if "_embedded" in body:
        assert body["_embedded"]["items"]


def test_product_and_model_get_match_the_schema(
    client: TestClient, spec: SwaggerDocument, catalogue: Catalogue
) -> None:
    variant = next(p for p in catalogue.iter_products() if p["parent"])
    simple = next(p for p in catalogue.iter_products() if not p["parent"])
    for product in (variant, simple):
        body = client.get(f"{API}/products-uuid/{product['uuid']}").json()
        spec.validate_response("get", f"{API}/products-uuid/{{uuid}}", 200, body)
        assert body["uuid"] == product["uuid"]
    model = client.get(f"{API}/product-models/{variant['parent']}").json()
    spec.validate_response("get", f"{API}/product-models/{{code}}", 200, model)
    assert model["code"] == variant["parent"]
    # A variant shows the values it inherits from its models, as Akeneo does.
    assert set(model["values"]) <= set(variant["values"])


def test_products_show_realistic_value_shapes(client: TestClient, catalogue: Catalogue) -> None:
    product = next(
        p for p in catalogue.iter_products() if {"weight", "image", "material"} <= set(p["values"])
    )
    body = client.get(f"{API}/products-uuid/{product['uuid']}").json()
    values = body["values"]
    assert values["sku"][0]["data"].startswith("SKU-")
    assert {e["locale"] for e in values["name"]} == {"en_US", "fr_FR", "de_DE"}
    assert {e["scope"] for e in values["description"]} == {"ecommerce", "mobile"}
    assert {p["currency"] for p in values["price"][0]["data"]} == {"EUR", "USD"}
    assert values["weight"][0]["data"]["unit"] == "KILOGRAM"
    assert isinstance(values["material"][0]["data"], list)
    download = values["image"][0]["_links"]["download"]["href"]
    assert download.startswith("http://akeneo.test/api/rest/v1/media-files/")
    image = client.get(download)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")


def test_post_search_matches_schema_and_filters(
    client: TestClient, spec: SwaggerDocument, catalogue: Catalogue
) -> None:
    wanted = [catalogue.product_uuid(n) for n in (3, 40, 77)]
    search = json.dumps({"uuid": [{"operator": "IN", "value": wanted}]})
    body = {"search": search, "locales": "fr_FR"}
    spec.validate_request("post", f"{API}/products-uuid/search", body)
    response = client.post(f"{API}/products-uuid/search?pagination_type=search_after", json=body)
    assert response.status_code == 200, response.text
    spec.validate_response("post", f"{API}/products-uuid/search", 200, response.json())
    found = response.json()["_embedded"]["items"]
    assert [p["uuid"] for p in found] == wanted
    assert {e["locale"] for p in found for e in p["values"]["name"]} == {"fr_FR"}


# ----------------------------------------------------------------------------- pagination
def test_search_after_walks_the_whole_catalogue_exactly_once(
    client: TestClient, catalogue: Catalogue
) -> None:
    pages = walk(client, f"{API}/products-uuid", pagination_type="search_after", limit=100)
    uuids = [p["uuid"] for p in items(pages)]
    assert len(pages) == 3
    assert len(uuids) == len(set(uuids)) == catalogue.product_count == 250


def test_search_after_survives_deleting_the_cursor_product(
    client: TestClient, catalogue: Catalogue
) -> None:
    first = client.get(
        f"{API}/products-uuid", params={"pagination_type": "search_after", "limit": 50}
    )
    last_uuid = first.json()["_embedded"]["items"][-1]["uuid"]
    catalogue.delete_product(last_uuid)
    rest = walk(client, first.json()["_links"]["next"]["href"])
    uuids = [p["uuid"] for p in first.json()["_embedded"]["items"]] + [
        p["uuid"] for p in items(rest)
    ]
    assert len(uuids) == len(set(uuids)) == 250


def test_product_models_walk_each_model_once(client: TestClient, catalogue: Catalogue) -> None:
    pages = walk(client, f"{API}/product-models", pagination_type="search_after", limit=7)
    codes = [m["code"] for m in items(pages)]
    assert codes == list(catalogue.iter_model_codes())
    assert len(codes) == len(set(codes)) > 10
    # Every variant's parent is listed.
    parents = {p["parent"] for p in catalogue.iter_products() if p["parent"]}
    assert parents <= set(codes)


def test_page_pagination_walks_attributes_once(client: TestClient) -> None:
    pages = walk(client, f"{API}/attributes", limit=25)
    codes = [a["code"] for a in items(pages)]
    assert [p["current_page"] for p in pages] == [1, 2, 3]
    assert len(codes) == len(set(codes)) == 60
    assert "previous" in pages[1]["_links"]


@pytest.mark.parametrize(
    "url", [f"{API}/products-uuid", f"{API}/attributes", f"{API}/product-models"]
)
def test_limit_above_100_is_refused_with_422(
    client: TestClient, spec: SwaggerDocument, url: str
) -> None:
    response = client.get(url, params={"limit": 101})
    assert response.status_code == 422
    assert response.json() == {"code": 422, "message": "You cannot request more than 100 items."}


def test_page_pagination_of_products_stops_at_10000_items(client: TestClient) -> None:
    response = client.get(f"{API}/products-uuid", params={"page": 101, "limit": 100})
    assert response.status_code == 422
    assert "search after" in response.json()["message"]


# ----------------------------------------------------------------------------- filters
def test_updated_filter_returns_only_newer_products(
    client: TestClient, catalogue: Catalogue
) -> None:
    target = catalogue.product_uuid(123)
    change = catalogue.update_product(
        target, values={"is_new": [{"locale": None, "scope": None, "data": True}]}
    )
    since = (change.at - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
    search = json.dumps({"updated": [{"operator": ">", "value": since}]})
    pages = walk(client, f"{API}/products-uuid", pagination_type="search_after", search=search)
    assert [p["uuid"] for p in items(pages)] == [target]


def test_between_filter_matches_the_generated_timestamps(
    client: TestClient, catalogue: Catalogue
) -> None:
    low, high = "2023-06-01 00:00:00", "2023-12-31 23:59:59"
    search = json.dumps({"updated": [{"operator": "BETWEEN", "value": [low, high]}]})
    pages = walk(
        client, f"{API}/products-uuid", pagination_type="search_after", limit=100, search=search
    )
    got = {p["uuid"] for p in items(pages)}
    expected = {
        catalogue.product_uuid(n)
        for n in catalogue.iter_product_indexes()
        if "2023-06-01" <= catalogue.effective_updated(n).strftime("%Y-%m-%d %H:%M:%S") <= high
    }
    assert got == expected
    assert 0 < len(got) < 250


def test_model_edit_makes_its_variants_match_the_updated_filter(
    client: TestClient, catalogue: Catalogue
) -> None:
    variant = next(p for p in catalogue.iter_products() if p["parent"])
    root = "_".join(variant["parent"].split("_")[:2])  # model_<group>[_<color>] -> root
    change = catalogue.update_product_model(
        root, values={"name": [{"locale": "en_US", "scope": None, "data": "Renamed model"}]}
    )
    search = json.dumps(
        {"updated": [{"operator": "=", "value": change.at.strftime("%Y-%m-%d %H:%M:%S")}]}
    )
    found = items(
        walk(client, f"{API}/products-uuid", pagination_type="search_after", search=search)
    )
    assert variant["uuid"] in {p["uuid"] for p in found}
    fetched = client.get(f"{API}/products-uuid/{variant['uuid']}").json()
    names = {e["locale"]: e["data"] for e in fetched["values"]["name"]}
    assert names["en_US"] == "Renamed model"  # the variant inherits the model's new value


@pytest.mark.parametrize(
    ("search", "status"),
    [
        ("{not json", 400),
        (json.dumps({"updated": [{"operator": ">", "value": "2024-01-01T00:00:00Z"}]}), 422),
        (json.dumps({"updated": [{"operator": "LIKE", "value": "x"}]}), 422),
        (json.dumps({"weird": [{"operator": "=", "value": 1}]}), 422),
    ],
)
def test_bad_search_is_refused(client: TestClient, search: str, status: int) -> None:
    response = client.get(f"{API}/products-uuid", params={"search": search})
    assert response.status_code == status
    assert response.json()["code"] == status


# ----------------------------------------------------------------------------- auth
def test_missing_token_gets_401_in_akeneo_error_shape(
    app: Starlette, spec: SwaggerDocument
) -> None:
    with TestClient(app) as anonymous:
        response = anonymous.get(f"{API}/products-uuid")
    assert response.status_code == 401
    spec.validate_response("get", f"{API}/products-uuid", 401, response.json())
    assert response.json() == {"code": 401, "message": "Authentication is required"}


def test_expired_token_gets_401_and_refresh_issues_a_working_pair(
    app: Starlette, clock: FakeClock, spec: SwaggerDocument
) -> None:
    with TestClient(app) as c:
        pair = password_grant(c)
        spec.validate_response("post", TOKEN_URL, 200, pair)
        assert pair["token_type"] == "bearer" and pair["expires_in"] == 60
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert c.get(f"{API}/locales", headers=bearer).status_code == 200
        clock.now += 61
        expired = c.get(f"{API}/locales", headers=bearer)
        assert expired.status_code == 401
        assert expired.json()["message"] == "The access token provided has expired."
        auth = (CREDENTIALS["client_id"], CREDENTIALS["secret"])
        refresh = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
        renewed = c.post(TOKEN_URL, json=refresh, auth=auth)
        assert renewed.status_code == 200
        new_bearer = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
        assert c.get(f"{API}/locales", headers=new_bearer).status_code == 200
        # Refresh tokens rotate: the old one is spent.
        assert c.post(TOKEN_URL, json=refresh, auth=auth).status_code == 422


def test_token_route_accepts_form_bodies_and_rejects_bad_credentials(app: Starlette) -> None:
    auth = (CREDENTIALS["client_id"], CREDENTIALS["secret"])
    form = {"grant_type": "password", "username": "api_user", "password": "api_pass"}
    with TestClient(app) as c:
        assert c.post(TOKEN_URL, data=form, auth=auth).status_code == 200
        assert c.post(TOKEN_URL, data=form, auth=("client_abc", "wrong")).status_code == 422
        wrong_user = {**form, "password": "nope"}
        assert c.post(TOKEN_URL, data=wrong_user, auth=auth).status_code == 422


# ----------------------------------------------------------------------------- faults
def test_rate_limit_fault_answers_429_with_retry_after(
    client: TestClient, app: Starlette, spec: SwaggerDocument
) -> None:
    app.state.faults.rate_429 = 1.0
    app.state.faults.retry_after = 7
    response = client.get(f"{API}/products-uuid")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    # The document lists 429 only among its shared responses; its body is the Error definition.
    spec.validate_definition("Error", response.json())
    app.state.faults.rate_429 = 0.0
    assert client.get(f"{API}/products-uuid").status_code == 200


def test_fault_rates_are_roughly_honoured(client: TestClient, app: Starlette) -> None:
    app.state.faults.rate_5xx = 0.3
    statuses = [client.get(f"{API}/locales").status_code for _ in range(200)]
    assert set(statuses) == {200, 500}
    assert 30 <= statuses.count(500) <= 90


def test_scripted_faults_hit_the_next_requests_in_order(client: TestClient, app: Starlette) -> None:
    app.state.faults.fail_next(503, 2)
    app.state.faults.fail_next(429)
    got = [client.get(f"{API}/channels").status_code for _ in range(4)]
    assert got == [503, 503, 429, 200]
    assert app.state.stats[(f"{API}/channels", 503)] == 2


def test_latency_fault_delays_answers(client: TestClient, app: Starlette) -> None:
    app.state.faults.latency = 0.05
    start = time.perf_counter()
    client.get(f"{API}/locales")
    assert time.perf_counter() - start >= 0.05


def test_unknown_product_is_404_in_akeneo_shape(client: TestClient, spec: SwaggerDocument) -> None:
    response = client.get(f"{API}/products-uuid/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    spec.validate_response("get", f"{API}/products-uuid/{{uuid}}", 404, response.json())
    assert client.get(f"{API}/nope").json() == {"code": 404, "message": "Resource not found"}
