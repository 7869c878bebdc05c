"""Route table of the Magento sandbox: one function per REST operation, free of HTTP details."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pim_hub.sandbox.magento.config import StoreView
from pim_hub.sandbox.magento.errors import MSG_REQUIRED, MagentoError, bad_request
from pim_hub.sandbox.magento.state import DEFAULT_CATEGORY_ID, MagentoState, Scope


@dataclass(frozen=True)
class Call:
    """One call of a REST operation (sync or replayed from an async bulk operation)."""

    state: MagentoState
    scope: Scope
    params: dict[str, str]
    query: dict[str, str]
    body: Any


Handler = Callable[[Call], Any]
ROUTES: dict[tuple[str, str], Handler] = {}

# The ACL resource Magento names in its 401 message, by the first segments of the route.
_ACL = (
    ("/V1/products/attributes", "Magento_Catalog::attributes_attributes"),
    ("/V1/products", "Magento_Catalog::products"),
    ("/V1/configurable-products", "Magento_Catalog::products"),
    ("/V1/categories", "Magento_Catalog::categories"),
    ("/V1/store", "Magento_Backend::store"),
    ("/V1/bulk", "Magento_Logging::system_magento_logging_bulk_operations"),
)

# Queue topics Magento's WebapiAsync derives from the service contract of each route.
TOPICS = {
    ("POST", "/V1/products"): "async.magento.catalog.api.productrepositoryinterface.save.post",
    ("PUT", "/V1/products/{sku}"): "async.magento.catalog.api.productrepositoryinterface.save.put",
    ("DELETE", "/V1/products/{sku}"): (
        "async.magento.catalog.api.productrepositoryinterface.deletebyid.delete"
    ),
    ("POST", "/V1/products/{sku}/media"): (
        "async.magento.catalog.api.productattributemediagallerymanagementinterface.create.post"
    ),
    ("POST", "/V1/products/attributes/{attributeCode}/options"): (
        "async.magento.catalog.api.productattributeoptionmanagementinterface.add.post"
    ),
    ("POST", "/V1/categories"): "async.magento.catalog.api.categoryrepositoryinterface.save.post",
    (
        "PUT",
        "/V1/categories/{id}",
    ): "async.magento.catalog.api.categoryrepositoryinterface.save.put",
    ("POST", "/V1/configurable-products/{sku}/child"): (
        "async.magento.configurableproduct.api.linkmanagementinterface.addchild.post"
    ),
}


def acl_resource(template: str) -> str:
    """The ACL resource of a route, for the 401 message."""
    for prefix, resource in _ACL:
        if template.startswith(prefix):
            return resource
    return "Magento_Backend::admin"


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    """Register a handler for a path template of the official document."""

    def register(func: Handler) -> Handler:
        ROUTES[(method, template)] = func
        return func

    return register


def _int(call: Call, name: str) -> int:
    # Path parameters were checked against their Swagger type before the handler runs.
    return int(call.params[name])


# ---------------------------------------------------------------------------- products
@route("POST", "/V1/products")
def create_product(call: Call) -> Any:
    product = call.state.save_product(call.scope, call.body["product"])
    return call.state.product_json(product, call.scope.store_id)


@route("PUT", "/V1/products/{sku}")
def put_product(call: Call) -> Any:
    # The path SKU names the product; Magento forces it onto the body's product.sku.
    product = call.state.save_product(call.scope, call.body["product"], path_sku=call.params["sku"])
    return call.state.product_json(product, call.scope.store_id)


@route("GET", "/V1/products/{sku}")
def get_product(call: Call) -> Any:
    store_id = call.scope.store_id
    if call.query.get("storeId", "").isdigit():
        store_id = int(call.query["storeId"])
    with call.state.locked():
        return call.state.product_json(call.state.get_product(call.params["sku"]), store_id)


@route("DELETE", "/V1/products/{sku}")
def delete_product(call: Call) -> Any:
    return call.state.delete_product(call.params["sku"])


@route("GET", "/V1/products")
def list_products(call: Call) -> Any:
    criteria = parse_search_criteria(call.query)
    if criteria is None:
        raise bad_request(MSG_REQUIRED, {"fieldName": "searchCriteria"})
    items, total = call.state.search_products(call.scope.store_id, criteria)
    echo: dict[str, Any] = {"filter_groups": criteria.get("filter_groups", [])}
    for key in ("sort_orders", "page_size", "current_page"):
        if key in criteria:
            echo[key] = criteria[key]
    return {"items": items, "search_criteria": echo, "total_count": total}


_CAMEL = {
    "filterGroups": "filter_groups",
    "conditionType": "condition_type",
    "sortOrders": "sort_orders",
    "pageSize": "page_size",
    "currentPage": "current_page",
}
_BRACKETS = re.compile(r"\[([^\]]*)\]")


def parse_search_criteria(query: dict[str, str]) -> dict[str, Any] | None:
    """Parse `searchCriteria[filter_groups][0][filters][0][field]=…` into a nested dict.

    Both snake_case and camelCase keys are accepted, as Magento does. Returns None when no
    `searchCriteria` parameter is present at all.
    """
    tree: dict[str, Any] = {}
    seen = False
    for key, value in query.items():
        if not key.startswith("searchCriteria"):
            continue
        seen = True
        parts = [_CAMEL.get(p, p) for p in _BRACKETS.findall(key)]
        if not parts:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    if not seen:
        return None

    def listify(node: Any) -> Any:
        if isinstance(node, dict):
            if node and all(k.isdigit() for k in node):
                return [listify(node[k]) for k in sorted(node, key=int)]
            return {k: listify(v) for k, v in node.items()}
        return node

    criteria: dict[str, Any] = listify(tree)
    for key in ("page_size", "current_page"):
        if key in criteria:
            raw = str(criteria[key])
            if not raw.isdigit():
                raise bad_request(
                    'The "%value" value\'s type is invalid. The "%type" type was expected. '
                    "Verify and try again.",
                    {"value": raw, "type": "int"},
                )
            criteria[key] = int(raw)
    for group in criteria.get("filter_groups", []):
        for flt in group.get("filters", []):
            flt.setdefault("value", "")
            flt.setdefault("condition_type", "eq")
    return criteria


# ---------------------------------------------------------------------------- media
@route("POST", "/V1/products/{sku}/media")
def create_media(call: Call) -> Any:
    return call.state.add_media(call.params["sku"], call.body["entry"]).id


@route("GET", "/V1/products/{sku}/media")
def list_media(call: Call) -> Any:
    return call.state.list_media(call.params["sku"])


@route("DELETE", "/V1/products/{sku}/media/{entryId}")
def delete_media(call: Call) -> Any:
    return call.state.delete_media(call.params["sku"], _int(call, "entryId"))


# ---------------------------------------------------------------------------- attributes
@route("GET", "/V1/products/attributes/{attributeCode}")
def get_attribute(call: Call) -> Any:
    return call.state.attribute_json(call.params["attributeCode"], call.scope.store_id)


@route("GET", "/V1/products/attributes/{attributeCode}/options")
def list_options(call: Call) -> Any:
    return call.state.options_json(call.params["attributeCode"], call.scope.store_id)


@route("POST", "/V1/products/attributes/{attributeCode}/options")
def add_option(call: Call) -> Any:
    return call.state.add_option(call.params["attributeCode"], call.body["option"])


@route("DELETE", "/V1/products/attributes/{attributeCode}/options/{optionId}")
def delete_option(call: Call) -> Any:
    return call.state.delete_option(call.params["attributeCode"], call.params["optionId"])


# ---------------------------------------------------------------------------- categories
@route("POST", "/V1/categories")
def create_category(call: Call) -> Any:
    category = call.state.create_category(call.scope, call.body["category"])
    return call.state.category_json(category, call.scope.store_id)


@route("PUT", "/V1/categories/{id}")
def update_category(call: Call) -> Any:
    raw = call.params["id"]
    if not raw.isdigit():
        raise bad_request(
            'The "%value" value\'s type is invalid. The "%type" type was expected. '
            "Verify and try again.",
            {"value": raw, "type": "int"},
        )
    category = call.state.update_category(call.scope, int(raw), call.body["category"])
    return call.state.category_json(category, call.scope.store_id)


@route("GET", "/V1/categories/{categoryId}")
def get_category(call: Call) -> Any:
    store_id = call.scope.store_id
    if call.query.get("storeId", "").isdigit():
        store_id = int(call.query["storeId"])
    with call.state.locked():
        category = call.state.get_category(_int(call, "categoryId"))
        return call.state.category_json(category, store_id)


@route("DELETE", "/V1/categories/{categoryId}")
def delete_category(call: Call) -> Any:
    return call.state.delete_category(_int(call, "categoryId"))


@route("PUT", "/V1/categories/{categoryId}/move")
def move_category(call: Call) -> Any:
    after = call.body.get("afterId")
    return call.state.move_category(
        _int(call, "categoryId"), int(call.body["parentId"]), None if after is None else int(after)
    )


@route("GET", "/V1/categories")
def category_tree(call: Call) -> Any:
    root = call.query.get("rootCategoryId", "")
    depth = call.query.get("depth", "")
    return call.state.category_tree(
        int(root) if root.isdigit() else DEFAULT_CATEGORY_ID,
        call.scope.store_id,
        int(depth) if depth.isdigit() else None,
    )


# ---------------------------------------------------------------------------- configurable
@route("POST", "/V1/configurable-products/{sku}/options")
def add_configurable_option(call: Call) -> Any:
    return call.state.add_configurable_option(call.params["sku"], call.body["option"])


@route("GET", "/V1/configurable-products/{sku}/options/all")
def list_configurable_options(call: Call) -> Any:
    return call.state.configurable_options(call.params["sku"])


@route("POST", "/V1/configurable-products/{sku}/child")
def add_child(call: Call) -> Any:
    return call.state.add_child(call.params["sku"], call.body["childSku"])


@route("DELETE", "/V1/configurable-products/{sku}/children/{childSku}")
def remove_child(call: Call) -> Any:
    return call.state.remove_child(call.params["sku"], call.params["childSku"])


@route("GET", "/V1/configurable-products/{sku}/children")
def list_children(call: Call) -> Any:
    with call.state.locked():
        return [
            call.state.product_json(child, call.scope.store_id)
            for child in call.state.children(call.params["sku"])
        ]


# ---------------------------------------------------------------------------- stores
def _views(state: MagentoState) -> list[StoreView]:
    return list(state.config.store_views)


@route("GET", "/V1/store/websites")
def websites(call: Call) -> Any:
    # Magento lists the admin website 0 too; clients filter it out by code.
    rows = [{"id": 0, "code": "admin", "name": "Admin", "default_group_id": 0}]
    rows += [
        {"id": w.id, "code": w.code, "name": w.name, "default_group_id": w.default_group_id}
        for w in call.state.config.websites
    ]
    return rows


@route("GET", "/V1/store/storeViews")
def store_views(call: Call) -> Any:
    rows = [
        {
            "id": 0,
            "code": "admin",
            "name": "Admin",
            "website_id": 0,
            "store_group_id": 0,
            "is_active": 1,
        }
    ]
    rows += [
        {
            "id": v.id,
            "code": v.code,
            "name": v.name,
            "website_id": v.website_id,
            "store_group_id": v.store_group_id,
            "is_active": v.is_active,
        }
        for v in _views(call.state)
    ]
    return rows


@route("GET", "/V1/store/storeConfigs")
def store_configs(call: Call) -> Any:
    currencies = {w.id: w.base_currency for w in call.state.config.websites}
    base = call.state.config.media_base_url
    rows = []
    for view in _views(call.state):
        url = f"{base}{view.code}/" if view.code != "default" else base
        rows.append(
            {
                "id": view.id,
                "code": view.code,
                "website_id": view.website_id,
                "locale": view.locale,
                "base_currency_code": currencies.get(view.website_id, "EUR"),
                "default_display_currency_code": currencies.get(view.website_id, "EUR"),
                "timezone": "UTC",
                "weight_unit": call.state.config.weight_unit,
                "base_url": url,
                "base_link_url": url,
                "base_static_url": f"{base}static/",
                "base_media_url": f"{base}media/",
                "secure_base_url": url,
                "secure_base_link_url": url,
                "secure_base_static_url": f"{base}static/",
                "secure_base_media_url": f"{base}media/",
            }
        )
    return rows


# ---------------------------------------------------------------------------- bulk status
def _bulk_summary(call: Call) -> dict[str, Any]:
    bulk = call.state.get_bulk(call.params["bulkUuid"])
    return {
        "user_type": bulk.user_type,
        "bulk_id": bulk.uuid,
        "description": bulk.description,
        "start_time": bulk.start_time,
        "user_id": bulk.user_id,
        "operation_count": len(bulk.operations),
    }


@route("GET", "/V1/bulk/{bulkUuid}/status")
def bulk_status(call: Call) -> Any:
    with call.state.locked():
        bulk = call.state.get_bulk(call.params["bulkUuid"])
        operations = [
            {
                "id": op.id,
                "status": op.status,
                "result_message": op.result_message,
                "error_code": op.error_code,
            }
            for op in bulk.operations
        ]
        return {**_bulk_summary(call), "operations_list": operations}


@route("GET", "/V1/bulk/{bulkUuid}/detailed-status")
def bulk_detailed_status(call: Call) -> Any:
    with call.state.locked():
        bulk = call.state.get_bulk(call.params["bulkUuid"])
        operations = [
            {
                "id": op.id,
                "bulk_uuid": op.bulk_uuid,
                "topic_name": op.topic_name,
                # Magento stores the request as meta_information inside a JSON envelope.
                "serialized_data": orjson.dumps(
                    {
                        "entity_id": None,
                        "entity_link": "",
                        "meta_information": orjson.dumps(op.body).decode(),
                    }
                ).decode(),
                "result_serialized_data": op.result_serialized_data,
                "status": op.status,
                "result_message": op.result_message,
                "error_code": op.error_code,
            }
            for op in bulk.operations
        ]
        return {**_bulk_summary(call), "operations_list": operations}


@route("GET", "/V1/bulk/{bulkUuid}/operation-status/{status}")
def bulk_operation_count(call: Call) -> Any:
    with call.state.locked():
        bulk = call.state.get_bulk(call.params["bulkUuid"])
        wanted = _int(call, "status")
        return sum(1 for op in bulk.operations if op.status == wanted)


def store_scope_for_bulk(state: MagentoState, code: str) -> Scope:
    """Scope of a stored bulk operation (its store code was valid when accepted)."""
    scope = state.scope(code)
    if scope is None:
        raise MagentoError(404, "Request does not match any route.")
    return scope
