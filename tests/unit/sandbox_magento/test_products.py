"""Tests of products: store-view scopes, errors, url_key clashes and searchCriteria."""

from __future__ import annotations

import copy
from dataclasses import fields
from typing import Any

from pim_hub.sandbox.magento.state import Product

from .conftest import Sandbox


def custom(body: dict[str, Any]) -> dict[str, Any]:
    return {a["attribute_code"]: a["value"] for a in body["custom_attributes"]}


def test_create_then_get_returns_the_product(sandbox: Sandbox) -> None:
    created = sandbox.product(
        "SKU-1", name="Shoe", price=19.9, type_id="simple", attribute_set_id=4
    )
    assert created.status_code == 200
    body = sandbox.get("/rest/V1/products/SKU-1").json()
    assert (body["sku"], body["name"], body["price"], body["id"]) == ("SKU-1", "Shoe", 19.9, 1)
    assert custom(body)["url_key"] == "shoe"
    assert body["extension_attributes"]["website_ids"] == [1]


def test_store_view_update_keeps_other_store_views(sandbox: Sandbox) -> None:
    sandbox.product(
        "SKU-1",
        name="Shoe",
        custom_attributes=[{"attribute_code": "description", "value": "A shoe"}],
    )
    fr = {"sku": "SKU-1", "name": "Chaussure"}
    assert sandbox.put("/rest/fr/V1/products/SKU-1", {"product": fr}).status_code == 200
    de = {
        "sku": "SKU-1",
        "custom_attributes": [{"attribute_code": "description", "value": "Ein Schuh"}],
    }
    assert sandbox.put("/rest/de/V1/products/SKU-1", {"product": de}).status_code == 200

    fr_view = sandbox.get("/rest/fr/V1/products/SKU-1").json()
    de_view = sandbox.get("/rest/de/V1/products/SKU-1").json()
    en_view = sandbox.get("/rest/default/V1/products/SKU-1").json()
    assert (fr_view["name"], custom(fr_view)["description"]) == ("Chaussure", "A shoe")
    assert (de_view["name"], custom(de_view)["description"]) == ("Shoe", "Ein Schuh")
    assert (en_view["name"], custom(en_view)["description"]) == ("Shoe", "A shoe")
    assert sandbox.state.product_values("SKU-1")["fr"] == {"name": "Chaussure"}
    assert sandbox.state.product_values("SKU-1")["de"] == {"description": "Ein Schuh"}


def test_all_scope_sets_global_values_and_default_scope_only_the_default_view(
    sandbox: Sandbox,
) -> None:
    sandbox.product("SKU-1", name="Shoe")
    sandbox.put("/rest/all/V1/products/SKU-1", {"product": {"sku": "SKU-1", "name": "Global"}})
    sandbox.put("/rest/V1/products/SKU-1", {"product": {"sku": "SKU-1", "name": "Default only"}})
    values = sandbox.state.product_values("SKU-1")
    assert values["admin"]["name"] == "Global"
    assert values["default"] == {"name": "Default only"}
    assert sandbox.get("/rest/fr/V1/products/SKU-1").json()["name"] == "Global"
    assert sandbox.get("/rest/all/V1/products/SKU-1").json()["name"] == "Global"


def test_global_attributes_ignore_the_store_view_of_the_url(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe", price=10.0)
    sandbox.put("/rest/fr/V1/products/SKU-1", {"product": {"sku": "SKU-1", "price": 12.5}})
    assert sandbox.state.product_values("SKU-1")["admin"]["price"] == 12.5
    assert "fr" not in sandbox.state.product_values("SKU-1")


def test_unknown_product_is_a_magento_404(sandbox: Sandbox) -> None:
    response = sandbox.get("/rest/V1/products/NOPE")
    assert response.status_code == 404
    assert response.json() == {
        "message": "The product that was requested doesn't exist. Verify the product and try again."
    }


def test_wrong_price_type_is_a_400_with_parameters(sandbox: Sandbox) -> None:
    response = sandbox.product("SKU-1", price="cheap")
    assert response.status_code == 400
    assert response.json()["parameters"] == {
        "fieldName": "product.price",
        "value": "cheap",
        "type": "float",
    }
    assert sandbox.state.products == {}


def test_missing_product_wrapper_is_a_400(sandbox: Sandbox) -> None:
    response = sandbox.post("/rest/V1/products", {"sku": "SKU-1"})
    assert response.status_code == 400
    assert response.json() == {
        "message": '"%fieldName" is required. Enter and try again.',
        "parameters": {"fieldName": "product"},
    }


def test_several_violations_are_listed_in_errors(sandbox: Sandbox) -> None:
    response = sandbox.post("/rest/V1/products", {"product": {"price": "x", "status": "on"}})
    body = response.json()
    assert response.status_code == 400
    fields = [e["parameters"]["fieldName"] for e in body["errors"]]
    assert fields == ["product.sku", "product.price", "product.status"]
    assert body["parameters"] == body["errors"][0]["parameters"]


def test_malformed_json_is_a_400(sandbox: Sandbox) -> None:
    response = sandbox.client.post(
        "/rest/V1/products",
        content=b"{nope",
        headers={**sandbox.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("Decoding error")


def test_duplicate_url_key_is_refused(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe")
    clash = sandbox.product(
        "SKU-2", name="Other", custom_attributes=[{"attribute_code": "url_key", "value": "shoe"}]
    )
    assert clash.status_code == 400
    assert clash.json() == {"message": "URL key for specified store already exists."}
    same_name = sandbox.product("SKU-3", name="Shoe")
    assert same_name.status_code == 400
    assert set(sandbox.state.products) == {"SKU-1"}


def test_url_key_clash_in_one_store_view_only(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe")
    sandbox.put(
        "/rest/fr/V1/products/SKU-1",
        {
            "product": {
                "sku": "SKU-1",
                "custom_attributes": [{"attribute_code": "url_key", "value": "chaussure"}],
            }
        },
    )
    sandbox.product("SKU-2", name="Boot")
    clash = sandbox.put(
        "/rest/fr/V1/products/SKU-2",
        {
            "product": {
                "sku": "SKU-2",
                "custom_attributes": [{"attribute_code": "url_key", "value": "chaussure"}],
            }
        },
    )
    assert clash.status_code == 400
    fine = sandbox.put(
        "/rest/de/V1/products/SKU-2",
        {
            "product": {
                "sku": "SKU-2",
                "custom_attributes": [{"attribute_code": "url_key", "value": "chaussure"}],
            }
        },
    )
    assert fine.status_code == 200


def test_products_not_visible_individually_may_share_url_keys(sandbox: Sandbox) -> None:
    sandbox.product("PARENT", name="Tee", type_id="configurable")
    child = sandbox.product("CHILD-S", name="Tee", visibility=1)
    assert child.status_code == 200


def test_second_post_with_same_sku_updates(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe", price=1.0)
    again = sandbox.product("SKU-1", price=2.0)
    assert again.status_code == 200
    assert again.json()["id"] == 1
    assert sandbox.get("/rest/V1/products/SKU-1").json()["price"] == 2.0


def test_delete_returns_true_and_removes(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe")
    response = sandbox.delete("/rest/V1/products/SKU-1")
    assert (response.status_code, response.json()) == (200, True)
    assert sandbox.get("/rest/V1/products/SKU-1").status_code == 404
    assert sandbox.delete("/rest/V1/products/SKU-1").status_code == 404


def test_category_links_must_point_to_existing_categories(sandbox: Sandbox) -> None:
    ok = sandbox.product(
        "SKU-1",
        name="Shoe",
        extension_attributes={"category_links": [{"category_id": "2", "position": 0}]},
    )
    assert ok.json()["extension_attributes"]["category_links"] == [
        {"position": 0, "category_id": "2"}
    ]
    bad = sandbox.product(
        "SKU-2", name="Boot", extension_attributes={"category_links": [{"category_id": "99"}]}
    )
    assert bad.status_code == 400
    assert bad.json()["parameters"] == ["SKU-2", "0", "99"]


def test_search_criteria_filters_and_pages(sandbox: Sandbox) -> None:
    for i in range(5):
        sandbox.product(f"SKU-{i}", name=f"Shoe {i}", price=float(i))
    sandbox.product("BOOT", name="Boot", price=50.0)
    page = sandbox.get(
        "/rest/V1/products",
        params={
            "searchCriteria[filter_groups][0][filters][0][field]": "sku",
            "searchCriteria[filter_groups][0][filters][0][value]": "SKU-%",
            "searchCriteria[filter_groups][0][filters][0][condition_type]": "like",
            "searchCriteria[sortOrders][0][field]": "price",
            "searchCriteria[sortOrders][0][direction]": "DESC",
            "searchCriteria[pageSize]": "2",
            "searchCriteria[currentPage]": "2",
        },
    ).json()
    assert page["total_count"] == 5
    assert [p["sku"] for p in page["items"]] == ["SKU-2", "SKU-1"]
    assert page["search_criteria"]["page_size"] == 2
    eq = sandbox.get(
        "/rest/V1/products",
        params={
            "searchCriteria[filterGroups][0][filters][0][field]": "price",
            "searchCriteria[filterGroups][0][filters][0][value]": "50",
        },
    ).json()
    assert [p["sku"] for p in eq["items"]] == ["BOOT"]


def test_sku_searches_match_what_a_full_scan_matches(sandbox: Sandbox) -> None:
    # SKU groups are looked up by name; the answer must be the one filtering every product.
    for sku in ("A-1", "10", "B-2", "C-3"):
        sandbox.product(sku, name=f"Item {sku}", price=1.0)

    def skus(
        *filters: tuple[str, str, str], group2: tuple[str, str, str] | None = None
    ) -> list[str]:
        params: dict[str, str] = {}
        for i, (field, value, cond) in enumerate(filters):
            prefix = f"searchCriteria[filter_groups][0][filters][{i}]"
            params |= {f"{prefix}[field]": field, f"{prefix}[value]": value}
            params[f"{prefix}[condition_type]"] = cond
        if group2 is not None:
            prefix = "searchCriteria[filter_groups][1][filters][0]"
            params |= {f"{prefix}[field]": group2[0], f"{prefix}[value]": group2[1]}
            params[f"{prefix}[condition_type]"] = group2[2]
        body = sandbox.get("/rest/V1/products", params=params).json()
        return [p["sku"] for p in body["items"]]

    # Catalogue (id) order, whatever order the value names them in; unknown names match none.
    assert skus(("sku", "C-3, A-1,missing", "in")) == ["A-1", "C-3"]
    assert skus(("sku", "B-2", "eq"), ("sku", "A-1", "eq")) == ["A-1", "B-2"]
    # A numeric value compares as a number, as in SQL: "10.0" finds SKU "10".
    assert skus(("sku", "10.0", "eq")) == ["10"]
    # Other groups still apply to the candidates.
    assert skus(("sku", "A-1,B-2", "in"), group2=("name", "Item B%", "like")) == ["B-2"]


def test_renamed_product_frees_its_old_url_key(sandbox: Sandbox) -> None:
    assert sandbox.product("SKU-1", name="Red Shoe").status_code == 200
    assert sandbox.product("SKU-2", name="Red Shoe").status_code == 400  # url key taken
    sandbox.product(
        "SKU-1",
        "all",
        name="Blue Shoe",
        custom_attributes=[{"attribute_code": "url_key", "value": "blue-shoe"}],
    )
    assert sandbox.product("SKU-2", name="Red Shoe").status_code == 200
    assert sandbox.delete("/rest/V1/products/SKU-2").status_code == 200
    assert sandbox.product("SKU-3", name="Red Shoe").status_code == 200


def test_product_list_requires_search_criteria(sandbox: Sandbox) -> None:
    response = sandbox.get("/rest/V1/products")
    assert response.status_code == 400
    assert response.json()["parameters"] == {"fieldName": "searchCriteria"}


def test_unknown_route_and_unknown_store_are_404(sandbox: Sandbox) -> None:
    expected = {"message": "Request does not match any route."}
    for path in ("/rest/V1/nothing", "/rest/xx/V1/products/SKU-1", "/elsewhere"):
        response = sandbox.get(path)
        assert (response.status_code, response.json()) == (404, expected), path
    wrong_method = sandbox.client.patch("/rest/V1/products/SKU-1", headers=sandbox.headers)
    assert wrong_method.status_code == 404


def test_request_counters_by_status(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe")
    sandbox.get("/rest/V1/products/NOPE")
    stats = sandbox.state.stats
    assert stats.by_status[404] == 1
    assert stats.by_route[("POST", "/V1/products", 200)] == 1
    assert stats.recent[-1].status == 404
    assert sandbox.state.snapshot()["requests"]["by_status"][404] == 1


def _nested_product() -> Product:
    return Product(
        id=1,
        sku="A",
        type_id="configurable",
        attribute_set_id=4,
        created_at="t",
        updated_at="t",
        values={0: {"name": "n", "price": 1.5, "tags": ["x"]}, 2: {"name": "fr"}},
        category_links=[{"position": 0, "category_id": "2"}],
        extension_extra={"x": {"y": [1]}},
        configurable_options=[{"attribute_id": "93", "values": [{"value_index": 1}]}],
        child_ids=[2],
    )


def test_a_product_clone_is_a_deep_copy() -> None:
    # An update works on a clone, so a refused update leaves the stored product untouched.
    product = _nested_product()
    twin = product.clone()
    assert twin == copy.deepcopy(product)
    seen = {id(v) for v in product.values.values()} | {id(product.values)}
    seen |= {id(getattr(product, f.name)) for f in fields(Product) if f.name != "values"}
    twin.values[0]["tags"].append("z")
    twin.values[2]["name"] = "changed"
    twin.extension_extra["x"]["y"].append(2)
    twin.configurable_options[0]["values"].append({"value_index": 3})
    twin.child_ids.append(3)
    assert product == _nested_product()
    containers = [twin.values, *twin.values.values(), twin.category_links, twin.child_ids]
    assert not {id(c) for c in containers} & seen
