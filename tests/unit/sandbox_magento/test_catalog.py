"""Tests of categories, attribute options, media, configurable products and stores."""

from __future__ import annotations

import base64

from pim_hub.sandbox.magento import AttributeSeed, SandboxConfig
from pim_hub.sandbox.magento.spec import MagentoSpec

from .conftest import Sandbox, make_sandbox

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image-bytes").decode()


def new_category(sandbox: Sandbox, name: str, parent: int = 2) -> int:
    response = sandbox.post(
        "/rest/V1/categories", {"category": {"name": name, "parent_id": parent}}
    )
    assert response.status_code == 200, response.text
    category_id: int = response.json()["id"]
    return category_id


def test_category_create_get_and_store_label(sandbox: Sandbox) -> None:
    shoes = new_category(sandbox, "Shoes")
    body = sandbox.get(f"/rest/V1/categories/{shoes}").json()
    assert (body["name"], body["parent_id"], body["path"], body["level"]) == (
        "Shoes",
        2,
        f"1/2/{shoes}",
        2,
    )
    sandbox.put(f"/rest/fr/V1/categories/{shoes}", {"category": {"name": "Chaussures"}})
    assert sandbox.get(f"/rest/fr/V1/categories/{shoes}").json()["name"] == "Chaussures"
    assert sandbox.get(f"/rest/de/V1/categories/{shoes}").json()["name"] == "Shoes"
    assert sandbox.get("/rest/V1/categories/2").json()["children"] == str(shoes)


def test_missing_category_is_no_such_entity(sandbox: Sandbox) -> None:
    response = sandbox.get("/rest/V1/categories/404")
    assert response.status_code == 404
    assert response.json() == {
        "message": "No such entity with %fieldName = %fieldValue",
        "parameters": {"fieldName": "id", "fieldValue": "404"},
    }
    typed = sandbox.get("/rest/V1/categories/abc")
    assert typed.status_code == 400
    assert typed.json()["parameters"]["type"] == "int"


def test_category_move_changes_path_and_order(sandbox: Sandbox) -> None:
    men = new_category(sandbox, "Men")
    women = new_category(sandbox, "Women")
    shoes = new_category(sandbox, "Shoes", parent=men)
    boots = new_category(sandbox, "Boots", parent=women)
    moved = sandbox.put(f"/rest/V1/categories/{shoes}/move", {"parentId": women})
    assert (moved.status_code, moved.json()) == (200, True)
    body = sandbox.get(f"/rest/V1/categories/{shoes}").json()
    assert body["path"] == f"1/2/{women}/{shoes}"
    assert sandbox.get(f"/rest/V1/categories/{women}").json()["children"] == f"{boots},{shoes}"
    null_after = sandbox.put(
        f"/rest/V1/categories/{shoes}/move", {"parentId": women, "afterId": None}
    )
    assert null_after.status_code == 400  # the document types afterId as integer, not nullable
    first = sandbox.put(f"/rest/V1/categories/{boots}/move", {"parentId": women, "afterId": shoes})
    assert first.status_code == 200
    assert sandbox.get(f"/rest/V1/categories/{women}").json()["children"] == f"{shoes},{boots}"


def test_category_cannot_move_below_itself(sandbox: Sandbox) -> None:
    men = new_category(sandbox, "Men")
    shoes = new_category(sandbox, "Shoes", parent=men)
    response = sandbox.put(f"/rest/V1/categories/{men}/move", {"parentId": shoes})
    assert response.status_code == 400
    missing = sandbox.put(f"/rest/V1/categories/{men}/move", {"afterId": 3})
    assert missing.json()["parameters"] == {"fieldName": "parentId"}


def test_category_delete_drops_subtree_and_product_links(sandbox: Sandbox) -> None:
    men = new_category(sandbox, "Men")
    shoes = new_category(sandbox, "Shoes", parent=men)
    sandbox.product(
        "SKU-1", name="Shoe", extension_attributes={"category_links": [{"category_id": str(shoes)}]}
    )
    assert sandbox.delete(f"/rest/V1/categories/{men}").json() is True
    assert sandbox.get(f"/rest/V1/categories/{shoes}").status_code == 404
    assert sandbox.state.snapshot()["products"]["SKU-1"]["category_links"] == []
    tree = sandbox.get("/rest/V1/categories").json()
    assert tree["children_data"] == []


def test_option_creation_returns_string_id_and_lists_it(sandbox: Sandbox) -> None:
    created = sandbox.post(
        "/rest/V1/products/attributes/color/options",
        {
            "option": {
                "label": "Red",
                "value": "",
                "store_labels": [{"store_id": 2, "label": "Rouge"}],
            }
        },
    )
    assert created.status_code == 200
    option_id = created.json()
    assert isinstance(option_id, str) and option_id.isdigit()
    listed = sandbox.get("/rest/V1/products/attributes/color/options").json()
    assert listed[0] == {"label": " ", "value": ""}
    assert [(o["label"], o["value"]) for o in listed[1:]] == [("Red", option_id)]
    fr = sandbox.get("/rest/fr/V1/products/attributes/color/options").json()
    assert fr[1]["label"] == "Rouge"
    assert sandbox.state.option_id("color", "Red") == option_id


def test_duplicate_option_label_is_refused(sandbox: Sandbox) -> None:
    body = {"option": {"label": "Red", "value": ""}}
    sandbox.post("/rest/V1/products/attributes/color/options", body)
    again = sandbox.post("/rest/V1/products/attributes/color/options", body)
    assert again.status_code == 400
    assert again.json() == {
        "message": 'Admin store attribute option label "%1" is already exists.',
        "parameters": ["Red"],
    }


def test_option_without_value_violates_the_document(sandbox: Sandbox) -> None:
    response = sandbox.post(
        "/rest/V1/products/attributes/color/options", {"option": {"label": "Red"}}
    )
    assert response.status_code == 400
    assert response.json()["parameters"] == {"fieldName": "option.value"}


def test_unknown_attribute_is_404_unless_auto_created(spec: MagentoSpec) -> None:
    strict = make_sandbox(spec)
    strict.login()
    body = {"option": {"label": "Cotton", "value": ""}}
    assert strict.post("/rest/V1/products/attributes/fabric/options", body).status_code == 404
    lenient = make_sandbox(spec, config=SandboxConfig(auto_create_attributes=True))
    lenient.login()
    assert lenient.post("/rest/V1/products/attributes/fabric/options", body).status_code == 200


def test_media_upload_and_listing(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe")
    entry = {
        "media_type": "image",
        "label": "Front",
        "position": 1,
        "disabled": False,
        "types": ["image", "thumbnail"],
        "content": {"base64_encoded_data": PNG, "type": "image/png", "name": "shoe.png"},
    }
    first = sandbox.post("/rest/V1/products/SKU-1/media", {"entry": entry})
    second = sandbox.post("/rest/V1/products/SKU-1/media", {"entry": {**entry, "types": ["image"]}})
    assert isinstance(first.json(), int) and second.json() == first.json() + 1
    listed = sandbox.get("/rest/V1/products/SKU-1/media").json()
    assert [m["file"] for m in listed] == ["/s/h/shoe.png", "/s/h/shoe_1.png"]
    assert [m["types"] for m in listed] == [["thumbnail"], ["image"]]
    media = sandbox.state.snapshot()["products"]["SKU-1"]["media"]
    assert media[0]["sha256"] == media[1]["sha256"]


def test_media_with_bad_content_is_refused(sandbox: Sandbox) -> None:
    sandbox.product("SKU-1", name="Shoe")
    entry = {
        "media_type": "image",
        "label": "",
        "position": 0,
        "disabled": False,
        "types": [],
        "content": {"base64_encoded_data": "***", "type": "image/png", "name": "x.png"},
    }
    response = sandbox.post("/rest/V1/products/SKU-1/media", {"entry": entry})
    assert response.status_code == 400
    assert "image content is invalid" in response.json()["message"]


def test_configurable_product_options_and_children(sandbox: Sandbox) -> None:
    red = sandbox.post(
        "/rest/V1/products/attributes/color/options", {"option": {"label": "Red", "value": ""}}
    ).json()
    sandbox.product("TEE", name="Tee", type_id="configurable")
    sandbox.product(
        "TEE-RED",
        name="Tee Red",
        visibility=1,
        custom_attributes=[{"attribute_code": "color", "value": red}],
    )
    sandbox.product("TEE-PLAIN", name="Tee Plain", visibility=1)
    option = {
        "attribute_id": "93",
        "label": "Color",
        "position": 0,
        "is_use_default": True,
        "values": [{"value_index": int(red)}],
    }
    created = sandbox.post("/rest/V1/configurable-products/TEE/options", {"option": option})
    assert created.status_code == 200 and isinstance(created.json(), int)
    assert (
        sandbox.post("/rest/V1/configurable-products/TEE/options", {"option": option}).status_code
        == 400
    )
    linked = sandbox.post("/rest/V1/configurable-products/TEE/child", {"childSku": "TEE-RED"})
    assert (linked.status_code, linked.json()) == (200, True)
    again = sandbox.post("/rest/V1/configurable-products/TEE/child", {"childSku": "TEE-RED"})
    assert again.json()["message"] == "The product is already attached."
    missing_axis = sandbox.post(
        "/rest/V1/configurable-products/TEE/child", {"childSku": "TEE-PLAIN"}
    )
    assert missing_axis.status_code == 400
    children = sandbox.get("/rest/V1/configurable-products/TEE/children").json()
    assert [c["sku"] for c in children] == ["TEE-RED"]
    parent = sandbox.get("/rest/V1/products/TEE").json()["extension_attributes"]
    assert parent["configurable_product_links"] == [children[0]["id"]]
    assert sandbox.state.snapshot()["products"]["TEE"]["children"] == ["TEE-RED"]


def test_websites_and_store_views_come_from_configuration(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, config=SandboxConfig(attributes=(AttributeSeed("color", 93),)))
    box.login()
    websites = box.get("/rest/V1/store/websites").json()
    assert [w["code"] for w in websites] == ["admin", "base"]
    views = box.get("/rest/V1/store/storeViews").json()
    assert [(v["id"], v["code"]) for v in views] == [
        (0, "admin"),
        (1, "default"),
        (2, "fr"),
        (3, "de"),
    ]
    configs = box.get("/rest/V1/store/storeConfigs").json()
    assert {c["code"]: c["locale"] for c in configs} == {
        "default": "en_US",
        "fr": "fr_FR",
        "de": "de_DE",
    }
