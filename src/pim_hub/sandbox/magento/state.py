"""In-memory Magento catalogue behind the sandbox, with inspection helpers for tests."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from pim_hub.sandbox.magento.config import AttributeSeed, SandboxConfig, StoreView
from pim_hub.sandbox.magento.errors import (
    MSG_PRODUCT_NOT_FOUND,
    MSG_URL_KEY_EXISTS,
    MagentoError,
    bad_request,
    no_such_entity,
)
from pim_hub.sandbox.magento.search import matches, sort_by

ADMIN_STORE_ID = 0
ROOT_CATEGORY_ID = 1
DEFAULT_CATEGORY_ID = 2
DEFAULT_ATTRIBUTE_SET_ID = 4

# Product fields that are EAV attributes but travel at the top level of the JSON.
TOP_LEVEL_ATTRIBUTES = ("name", "price", "status", "visibility", "weight")
CATEGORY_TOP_LEVEL = ("name", "is_active", "include_in_menu")
VISIBILITY_NOT_VISIBLE = 1

# Operation status codes of Magento\AsynchronousOperations (OperationInterface constants).
STATUS_COMPLETE = 1
STATUS_RETRIABLY_FAILED = 2
STATUS_NOT_RETRIABLY_FAILED = 3
STATUS_OPEN = 4
STATUS_REJECTED = 5

_IMAGE_MIME = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}
_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """Magento's url_key from a name: lower case, runs of other characters become '-'."""
    return _SLUG.sub("-", text.lower()).strip("-")


def stamp(now: float) -> str:
    """Magento's `Y-m-d H:i:s` UTC timestamp."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))


@dataclass(frozen=True)
class Scope:
    """The store scope a request addresses.

    Attributes:
        code: `all`, `default` or a store view code, as in the URL.
        store_id: where writes of store-scoped values land (0 for `all`).
    """

    code: str
    store_id: int

    @property
    def is_all(self) -> bool:
        """True for `/rest/all/...`, which reads and writes the admin (global) values."""
        return self.store_id == ADMIN_STORE_ID


@dataclass
class MediaEntry:
    """One media gallery entry; the content is kept only as its hash and size."""

    id: int
    media_type: str
    label: str
    position: int
    disabled: bool
    types: list[str]
    file: str
    content_sha256: str
    content_size: int

    def as_json(self) -> dict[str, Any]:
        """The entry as `/V1/products/{sku}/media` returns it."""
        return {
            "id": self.id,
            "media_type": self.media_type,
            "label": self.label,
            "position": self.position,
            "disabled": self.disabled,
            "types": list(self.types),
            "file": self.file,
        }


@dataclass
class Product:
    """A product with its values per store (0 = admin/global)."""

    id: int
    sku: str
    type_id: str
    attribute_set_id: int
    created_at: str
    updated_at: str
    values: dict[int, dict[str, Any]] = field(default_factory=dict)
    website_ids: list[int] = field(default_factory=list)
    category_links: list[dict[str, Any]] = field(default_factory=list)
    stock_item: dict[str, Any] | None = None
    extension_extra: dict[str, Any] = field(default_factory=dict)
    media: list[MediaEntry] = field(default_factory=list)
    configurable_options: list[dict[str, Any]] = field(default_factory=list)
    child_ids: list[int] = field(default_factory=list)
    product_links: list[dict[str, Any]] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)
    tier_prices: list[dict[str, Any]] = field(default_factory=list)

    def merged(self, store_id: int) -> dict[str, Any]:
        """Values as seen from a store view: admin values overlaid with the store's own."""
        view = dict(self.values.get(ADMIN_STORE_ID, {}))
        if store_id != ADMIN_STORE_ID:
            view.update(self.values.get(store_id, {}))
        return view

    def clone(self) -> Product:
        """A copy sharing nothing mutable with this product, as `copy.deepcopy` makes it.

        Most values are strings and numbers, which need no copy: deep-copying only the others
        makes an update of a product several times cheaper.
        """
        twin = copy.copy(self)
        twin.values = {
            store: {
                code: value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)
                for code, value in values.items()
            }
            for store, values in self.values.items()
        }
        for name in _MUTABLE_FIELDS:
            setattr(twin, name, copy.deepcopy(getattr(self, name)))
        return twin


_IMMUTABLE = (str, int, float, bool, type(None))
# Fields holding containers (every field but these scalars and `values`): copied in depth.
_MUTABLE_FIELDS = tuple(
    f.name
    for f in fields(Product)
    if f.name
    not in {"id", "sku", "type_id", "attribute_set_id", "created_at", "updated_at", "values"}
)


@dataclass
class Category:
    """A category node with store-scoped name and flags."""

    id: int
    parent_id: int
    position: int
    created_at: str
    updated_at: str
    values: dict[int, dict[str, Any]] = field(default_factory=dict)
    available_sort_by: list[str] = field(default_factory=list)

    def merged(self, store_id: int) -> dict[str, Any]:
        """Values as seen from a store view."""
        view = dict(self.values.get(ADMIN_STORE_ID, {}))
        if store_id != ADMIN_STORE_ID:
            view.update(self.values.get(store_id, {}))
        return view


@dataclass
class AttributeOption:
    """An option of a select attribute; `id` is what product values reference."""

    id: int
    label: str
    sort_order: int = 0
    is_default: bool = False
    store_labels: dict[int, str] = field(default_factory=dict)


@dataclass
class Attribute:
    """A product attribute that takes options."""

    attribute_id: int
    code: str
    frontend_input: str
    label: str
    scope: str
    options: list[AttributeOption] = field(default_factory=list)


@dataclass
class BulkOperation:
    """One item of an async bulk request, processed later like Magento's queue consumer."""

    id: int
    bulk_uuid: str
    topic_name: str
    method: str
    template: str
    path_params: dict[str, str]
    store_code: str
    body: Any
    status: int
    ready_at: float
    result_message: str = ""
    error_code: int = 0
    result_serialized_data: str = ""


@dataclass
class Bulk:
    """A bulk (one async bulk request) and its operations."""

    uuid: str
    user_type: int
    user_id: int
    description: str
    start_time: str
    operations: list[BulkOperation] = field(default_factory=list)


@dataclass
class AdminToken:
    """An admin bearer token and when it stops working."""

    token: str
    username: str
    user_id: int
    expires_at: float


@dataclass(frozen=True)
class RequestRecord:
    """One request the sandbox answered (kept for inspection)."""

    method: str
    path: str
    store: str
    template: str | None
    status: int


@dataclass
class RequestStats:
    """Counters of answered requests."""

    by_status: Counter[int] = field(default_factory=Counter)
    by_route: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    recent: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=10_000))

    @property
    def total(self) -> int:
        """All answered requests."""
        return sum(self.by_status.values())


class MagentoState:
    """The whole sandbox catalogue. Thread-safe: every public method takes the lock.

    Args:
        config: seed data and behaviour switches.
        clock: seconds since the epoch; tests pass a fake one to expire tokens or age bulks.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or SandboxConfig()
        self.clock = clock
        self.lock = threading.RLock()
        self.stats = RequestStats()
        self.tokens: dict[str, AdminToken] = {}
        self.products: dict[str, Product] = {}
        self.categories: dict[int, Category] = {}
        self.attributes: dict[str, Attribute] = {}
        self.bulks: dict[str, Bulk] = {}
        # Open operations only, so checking for due work on every request stays cheap.
        self._pending: list[BulkOperation] = []
        self._product_ids: dict[int, str] = {}
        # (store_id, url_key) -> sku of the visible product that owns that URL in that store.
        self._url_index: dict[tuple[int, str], str] = {}
        # sku -> its keys in _url_index: re-indexing a product must not scan every product
        self._url_keys_of: dict[str, list[tuple[int, str]]] = {}
        self._next_product_id = 1
        self._next_category_id = 3
        self._next_option_id = 10
        self._next_media_id = 1
        self._next_config_option_id = 1
        self._next_operation_id = 1
        self._next_attribute_id = 1000
        # Set by create_app: the simulated `async.operations.all` consumer of that app.
        self.bulk_consumer: Callable[..., int] | None = None
        self.store_views: dict[str, StoreView] = {s.code: s for s in self.config.store_views}
        self._store_by_id: dict[int, StoreView] = {s.id: s for s in self.config.store_views}
        default = self.store_views.get("default") or self.config.store_views[0]
        self.default_store = default
        now = stamp(self.clock())
        self.categories[ROOT_CATEGORY_ID] = Category(
            ROOT_CATEGORY_ID, 0, 0, now, now, {0: {"name": "Root Catalog", "is_active": True}}
        )
        self.categories[DEFAULT_CATEGORY_ID] = Category(
            DEFAULT_CATEGORY_ID,
            ROOT_CATEGORY_ID,
            1,
            now,
            now,
            {0: {"name": "Default Category", "is_active": True, "include_in_menu": True}},
        )
        for seed in self.config.attributes:
            self._seed_attribute(seed)

    # ------------------------------------------------------------------ scopes
    def scope(self, code: str | None) -> Scope | None:
        """Resolve a URL store code; None when Magento would not treat it as a store."""
        if code is None or code == "default":
            return Scope("default", self.default_store.id)
        if code == "all":
            return Scope("all", ADMIN_STORE_ID)
        view = self.store_views.get(code)
        return Scope(code, view.id) if view else None

    def store_code(self, store_id: int) -> str:
        """Store view code for an id (`admin` for 0)."""
        if store_id == ADMIN_STORE_ID:
            return "admin"
        return self._store_by_id[store_id].code

    def _write_store(self, scope: Scope, code: str, global_codes: set[str]) -> int:
        # Global attributes ignore the URL scope, as Magento saves them on the admin row.
        return ADMIN_STORE_ID if code in global_codes else scope.store_id

    def _global_codes(self) -> set[str]:
        codes = set(self.config.global_attributes)
        codes.update(a.code for a in self.attributes.values() if a.scope == "global")
        return codes

    # ------------------------------------------------------------------ locking
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state lock (the server thread and test thread share the state)."""
        with self.lock:
            yield

    # ------------------------------------------------------------------ tokens
    def issue_token(self, token: str, username: str, lifetime: float) -> AdminToken:
        """Record a new admin token."""
        with self.lock:
            issued = AdminToken(token, username, 1, self.clock() + lifetime)
            self.tokens[token] = issued
            return issued

    def admin_token(self, token: str) -> AdminToken | None:
        """The admin token if it exists and has not expired."""
        with self.lock:
            found = self.tokens.get(token)
            if found is None or found.expires_at <= self.clock():
                return None
            return found

    def revoke_tokens(self) -> None:
        """Forget every admin token (clients must log in again)."""
        with self.lock:
            self.tokens.clear()

    # ------------------------------------------------------------------ products
    def get_product(self, sku: str) -> Product:
        """The product or Magento's 404."""
        product = self.products.get(sku)
        if product is None:
            raise MagentoError(404, MSG_PRODUCT_NOT_FOUND)
        return product

    def save_product(
        self, scope: Scope, data: dict[str, Any], *, path_sku: str | None = None
    ) -> Product:
        """Create or update a product from a `catalog-data-product-interface` body.

        Only the attributes present in `data` change. A new product gets its values in the admin
        scope; an existing one gets store-scoped attributes in the URL's store (`default` is the
        default store view, `all` the admin values) and global attributes in the admin scope.
        """
        with self.lock:
            sku = path_sku if path_sku is not None else str(data.get("sku", ""))
            if not sku.strip():
                raise bad_request(
                    '"%fieldName" is required. Enter and try again.', {"fieldName": "sku"}
                )
            if len(sku) > 64:
                raise bad_request("SKU length should be 64 characters or less.")
            existing = self.products.get(sku)
            now = stamp(self.clock())
            if existing is None:
                product = Product(
                    id=self._next_product_id,
                    sku=sku,
                    type_id=str(data.get("type_id") or "simple"),
                    attribute_set_id=int(data.get("attribute_set_id") or DEFAULT_ATTRIBUTE_SET_ID),
                    created_at=now,
                    updated_at=now,
                    values={ADMIN_STORE_ID: {"status": 1, "visibility": 4}},
                    website_ids=[self.default_store.website_id],
                )
                target = Scope("all", ADMIN_STORE_ID)
            else:
                product = existing.clone()
                product.updated_at = now
                if "type_id" in data:
                    product.type_id = str(data["type_id"])
                if "attribute_set_id" in data:
                    product.attribute_set_id = int(data["attribute_set_id"])
                target = scope
            values = self._incoming_values(data, TOP_LEVEL_ATTRIBUTES)
            if existing is None and "url_key" not in values and isinstance(values.get("name"), str):
                # Magento derives url_key from the name on creation (hence duplicate-name clashes).
                values["url_key"] = slugify(values["name"])
            global_codes = self._global_codes()
            for code, value in values.items():
                store = self._write_store(target, code, global_codes)
                product.values.setdefault(store, {})[code] = value
            self._apply_extension(product, data.get("extension_attributes"))
            for key in ("product_links", "options", "tier_prices"):
                if key in data:
                    setattr(product, key, copy.deepcopy(data[key]))
            if "media_gallery_entries" in data:
                self._replace_media(product, data["media_gallery_entries"])
            self._check_url_keys(product)
            if existing is None:
                self._next_product_id += 1
            self.products[sku] = product
            self._product_ids[product.id] = sku
            self._index_url_keys(product)
            return product

    def _incoming_values(self, data: dict[str, Any], top_level: tuple[str, ...]) -> dict[str, Any]:
        values = {k: data[k] for k in top_level if k in data}
        for item in data.get("custom_attributes") or []:
            values[str(item["attribute_code"])] = item["value"]
        return values

    def _apply_extension(self, product: Product, ext: dict[str, Any] | None) -> None:
        if not ext:
            return
        for key, value in ext.items():
            if key == "website_ids":
                known = {w.id for w in self.config.websites}
                for website_id in value:
                    if website_id not in known:
                        raise bad_request(
                            "The website with id %1 that was requested wasn't found. "
                            "Verify the website and try again.",
                            [str(website_id)],
                        )
                product.website_ids = list(value)
            elif key == "category_links":
                links = []
                for link in value:
                    category_id = str(link["category_id"])
                    position = int(link.get("position", 0))
                    if not category_id.isdigit() or int(category_id) not in self.categories:
                        raise bad_request(
                            'Could not save product "%1" with position %2 to category %3',
                            [product.sku, str(position), category_id],
                        )
                    links.append({"position": position, "category_id": category_id})
                product.category_links = links
            elif key == "stock_item":
                product.stock_item = copy.deepcopy(value)
            elif key == "configurable_product_options":
                product.configurable_options = []
                for option in value:
                    self._add_configurable_option(product, option)
            elif key == "configurable_product_links":
                for child_id in value:
                    if child_id not in self._product_ids:
                        raise no_such_entity("id", child_id)
                product.child_ids = list(dict.fromkeys(value))
            else:
                product.extension_extra[key] = copy.deepcopy(value)

    def _visible_url_keys(self, product: Product) -> dict[int, str]:
        keys: dict[int, str] = {}
        for view in self.config.store_views:
            merged = product.merged(view.id)
            url_key = merged.get("url_key")
            # Magento writes URL rewrites only for products visible individually, so only those
            # can clash.
            if url_key and merged.get("visibility") != VISIBILITY_NOT_VISIBLE:
                keys[view.id] = str(url_key)
        return keys

    def _check_url_keys(self, product: Product) -> None:
        for store_id, url_key in self._visible_url_keys(product).items():
            owner = self._url_index.get((store_id, url_key))
            if owner is not None and owner != product.sku:
                raise MagentoError(400, MSG_URL_KEY_EXISTS)

    def _index_url_keys(self, product: Product) -> None:
        self._unindex_url_keys(product.sku)
        keys = list(self._visible_url_keys(product).items())
        for key in keys:
            self._url_index[key] = product.sku
        self._url_keys_of[product.sku] = keys

    def _unindex_url_keys(self, sku: str) -> None:
        for key in self._url_keys_of.pop(sku, []):
            if self._url_index.get(key) == sku:
                del self._url_index[key]

    def delete_product(self, sku: str) -> bool:
        """Delete a product and its links (Magento answers `true`)."""
        with self.lock:
            product = self.get_product(sku)
            del self.products[sku]
            del self._product_ids[product.id]
            self._unindex_url_keys(sku)
            for other in self.products.values():
                if product.id in other.child_ids:
                    other.child_ids.remove(product.id)
            return True

    def product_json(self, product: Product, store_id: int) -> dict[str, Any]:
        """The product as `GET /V1/products/{sku}` returns it for a store."""
        merged = product.merged(store_id)
        body: dict[str, Any] = {
            "id": product.id,
            "sku": product.sku,
            "attribute_set_id": product.attribute_set_id,
            "type_id": product.type_id,
            "created_at": product.created_at,
            "updated_at": product.updated_at,
        }
        for code in TOP_LEVEL_ATTRIBUTES:
            if code in merged:
                body[code] = merged[code]
        ext: dict[str, Any] = {"website_ids": list(product.website_ids)}
        ext["category_links"] = copy.deepcopy(product.category_links)
        if product.stock_item is not None:
            ext["stock_item"] = copy.deepcopy(product.stock_item)
        if product.type_id == "configurable":
            ext["configurable_product_options"] = copy.deepcopy(product.configurable_options)
            ext["configurable_product_links"] = list(product.child_ids)
        ext.update(copy.deepcopy(product.extension_extra))
        body["extension_attributes"] = ext
        body["product_links"] = copy.deepcopy(product.product_links)
        body["options"] = copy.deepcopy(product.options)
        body["media_gallery_entries"] = [m.as_json() for m in product.media]
        body["tier_prices"] = copy.deepcopy(product.tier_prices)
        body["custom_attributes"] = [
            {"attribute_code": code, "value": value}
            for code, value in merged.items()
            if code not in TOP_LEVEL_ATTRIBUTES
        ]
        return body

    def _candidates(self, criteria: dict[str, Any]) -> list[Product]:
        """Products a search can match: those a group of `sku` filters names, else every one.

        Magento looks SKUs up in an index; the filters still run on the candidates, so the
        answer is the one filtering every product gives (in catalogue order, which is id order).
        """
        for group in criteria.get("filter_groups", []):
            named = _named_skus(group.get("filters", []))
            if named is not None:
                found = [self.products[sku] for sku in named if sku in self.products]
                return sorted(found, key=lambda p: p.id)
        return list(self.products.values())

    def search_products(
        self, store_id: int, criteria: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int]:
        """Filter (groups AND, filters in a group OR), sort and page products."""
        with self.lock:
            rows = [self.product_json(p, store_id) for p in self._candidates(criteria)]
            for group in criteria.get("filter_groups", []):
                filters = group.get("filters", [])
                if filters:
                    rows = [r for r in rows if any(matches(r, f) for f in filters)]
            for order in reversed(criteria.get("sort_orders", [])):
                field_name = str(order.get("field", "id"))
                descending = str(order.get("direction", "ASC")).upper() == "DESC"
                rows.sort(key=sort_by(field_name), reverse=descending)
            total = len(rows)
            page_size = criteria.get("page_size")
            if page_size:
                current = max(int(criteria.get("current_page") or 1), 1)
                start = (current - 1) * int(page_size)
                rows = rows[start : start + int(page_size)]
            return rows, total

    # ------------------------------------------------------------------ media
    def add_media(self, sku: str, entry: dict[str, Any]) -> MediaEntry:
        """Create a gallery entry from base64 content; returns it (the API answers its id)."""
        with self.lock:
            product = self.get_product(sku)
            created = self._new_media(product, entry)
            product.media.append(created)
            self._apply_media_types(product, created)
            return created

    def _new_media(self, product: Product, entry: dict[str, Any]) -> MediaEntry:
        content = entry.get("content")
        invalid = bad_request("The image content is invalid. Verify the content and try again.")
        if not isinstance(content, dict):
            raise invalid
        mime = str(content.get("type", ""))
        if mime not in _IMAGE_MIME:
            raise bad_request("The image MIME type is not valid or not supported.")
        try:
            raw = base64.b64decode(str(content.get("base64_encoded_data", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid from exc
        if not raw:
            raise invalid
        name = str(content.get("name") or "image")
        stem = re.sub(r"[^a-z0-9_-]+", "_", name.rsplit(".", 1)[0].lower()) or "image"
        ext = _IMAGE_MIME[mime]
        taken = {m.file for p in self.products.values() for m in p.media}
        taken.update(m.file for m in product.media)
        # Magento's dispersion path (first two letters) and its `_1`, `_2` suffix on clashes.
        base = f"/{stem[0]}/{stem[1] if len(stem) > 1 else '_'}/{stem}"
        file, n = f"{base}.{ext}", 0
        while file in taken:
            n += 1
            file = f"{base}_{n}.{ext}"
        media = MediaEntry(
            id=self._next_media_id,
            media_type=str(entry.get("media_type", "image")),
            label=str(entry.get("label") or ""),
            position=int(entry.get("position") or 0),
            disabled=bool(entry.get("disabled", False)),
            types=[str(t) for t in entry.get("types", [])],
            file=file,
            content_sha256=hashlib.sha256(raw).hexdigest(),
            content_size=len(raw),
        )
        self._next_media_id += 1
        return media

    def _apply_media_types(self, product: Product, entry: MediaEntry) -> None:
        # An image role (image, small_image, thumbnail) belongs to one entry only.
        for other in product.media:
            if other is not entry:
                other.types = [t for t in other.types if t not in entry.types]

    def _replace_media(self, product: Product, entries: list[dict[str, Any]]) -> None:
        by_id = {m.id: m for m in product.media}
        kept: list[MediaEntry] = []
        for entry in entries:
            if entry.get("id") in by_id and not entry.get("content"):
                media = by_id[entry["id"]]
                media.label = str(entry.get("label") or "")
                media.position = int(entry.get("position") or 0)
                media.disabled = bool(entry.get("disabled", False))
                media.types = [str(t) for t in entry.get("types", [])]
                kept.append(media)
            else:
                kept.append(self._new_media(product, entry))
        product.media = kept

    def list_media(self, sku: str) -> list[dict[str, Any]]:
        """Gallery entries of a product."""
        with self.lock:
            return [m.as_json() for m in self.get_product(sku).media]

    def delete_media(self, sku: str, entry_id: int) -> bool:
        """Remove a gallery entry."""
        with self.lock:
            product = self.get_product(sku)
            for media in product.media:
                if media.id == entry_id:
                    product.media.remove(media)
                    return True
            raise MagentoError(
                404,
                "The image doesn't exist. Verify and try again.",
            )

    # ------------------------------------------------------------------ configurable
    def _add_configurable_option(self, product: Product, option: dict[str, Any]) -> dict[str, Any]:
        attribute_id = str(option.get("attribute_id", ""))
        if self._attribute_by_id(attribute_id) is None:
            raise bad_request("Something went wrong while saving option.")
        if any(str(o["attribute_id"]) == attribute_id for o in product.configurable_options):
            # Magento's unique key (product, attribute) makes a repeated option fail to save.
            raise bad_request("Something went wrong while saving option.")
        stored = {
            "id": self._next_config_option_id,
            "attribute_id": attribute_id,
            "label": str(option.get("label", "")),
            "position": int(option.get("position", 0)),
            "is_use_default": bool(option.get("is_use_default", False)),
            "values": [{"value_index": int(v["value_index"])} for v in option.get("values", [])],
            "product_id": product.id,
        }
        self._next_config_option_id += 1
        product.configurable_options.append(stored)
        return stored

    def add_configurable_option(self, sku: str, option: dict[str, Any]) -> int:
        """`POST /V1/configurable-products/{sku}/options`; returns the option id."""
        with self.lock:
            product = self.get_product(sku)
            if product.type_id != "configurable":
                # Magento turns the product configurable when the first option is added.
                product.type_id = "configurable"
            return int(self._add_configurable_option(product, option)["id"])

    def configurable_options(self, sku: str) -> list[dict[str, Any]]:
        """Options of a configurable product."""
        with self.lock:
            return copy.deepcopy(self.get_product(sku).configurable_options)

    def add_child(self, sku: str, child_sku: str) -> bool:
        """Link a simple product to a configurable one (Magento's LinkManagement::addChild)."""
        with self.lock:
            parent = self.get_product(sku)
            child = self.get_product(child_sku)
            if child.id in parent.child_ids:
                raise bad_request("The product is already attached.")
            if not parent.configurable_options:
                raise bad_request("The parent product doesn't have configurable product options.")
            values = child.merged(ADMIN_STORE_ID)
            for option in parent.configurable_options:
                attribute = self._attribute_by_id(str(option["attribute_id"]))
                code = attribute.code if attribute else str(option["attribute_id"])
                if not values.get(code):
                    raise bad_request(
                        'The child product doesn\'t have the "%1" attribute value. '
                        "Verify the value and try again.",
                        [code],
                    )
            parent.child_ids.append(child.id)
            return True

    def remove_child(self, sku: str, child_sku: str) -> bool:
        """Unlink a child from a configurable product."""
        with self.lock:
            parent = self.get_product(sku)
            child = self.get_product(child_sku)
            if child.id not in parent.child_ids:
                raise MagentoError(
                    404,
                    "The option that was requested doesn't exist. Verify the entity and try again.",
                )
            parent.child_ids.remove(child.id)
            return True

    def children(self, sku: str) -> list[Product]:
        """Child products of a configurable product."""
        with self.lock:
            parent = self.get_product(sku)
            return [self.products[self._product_ids[i]] for i in parent.child_ids]

    # ------------------------------------------------------------------ attributes
    def _seed_attribute(self, seed: AttributeSeed) -> Attribute:
        attribute = Attribute(
            seed.attribute_id, seed.code, seed.frontend_input, seed.label or seed.code, seed.scope
        )
        for label in seed.options:
            attribute.options.append(AttributeOption(self._next_option_id, label))
            self._next_option_id += 1
        self.attributes[seed.code] = attribute
        return attribute

    def add_attribute(self, seed: AttributeSeed) -> Attribute:
        """Create an attribute that accepts options (tests and demos seed their own)."""
        with self.lock:
            return self._seed_attribute(seed)

    def _attribute_by_id(self, attribute_id: str) -> Attribute | None:
        for attribute in self.attributes.values():
            if str(attribute.attribute_id) == attribute_id:
                return attribute
        return None

    def get_attribute(self, code: str, *, create: bool = False) -> Attribute:
        """The attribute or Magento's 404 (created on demand when configured to)."""
        attribute = self.attributes.get(code)
        if attribute is None:
            if create and self.config.auto_create_attributes:
                attribute = self._seed_attribute(AttributeSeed(code, self._next_attribute_id))
                self._next_attribute_id += 1
                return attribute
            raise MagentoError(
                404,
                'The attribute with a "%1" attributeCode doesn\'t exist. '
                "Verify the attribute and try again.",
                [code],
            )
        return attribute

    def add_option(self, code: str, option: dict[str, Any]) -> str:
        """`POST /V1/products/attributes/{code}/options`; the new option id as a string."""
        with self.lock:
            attribute = self.get_attribute(code, create=True)
            label = str(option.get("label") or "").strip()
            if not label:
                raise bad_request(
                    "The attribute option label is empty. Enter the value and try again."
                )
            if any(o.label == label for o in attribute.options):
                raise bad_request(
                    'Admin store attribute option label "%1" is already exists.', [label]
                )
            created = AttributeOption(
                self._next_option_id,
                label,
                int(option.get("sort_order") or 0),
                bool(option.get("is_default", False)),
                {
                    int(s["store_id"]): str(s["label"])
                    for s in option.get("store_labels") or []
                    if "store_id" in s and "label" in s
                },
            )
            self._next_option_id += 1
            attribute.options.append(created)
            return str(created.id)

    def delete_option(self, code: str, option_id: str) -> bool:
        """Remove an option."""
        with self.lock:
            attribute = self.get_attribute(code)
            for option in attribute.options:
                if str(option.id) == option_id:
                    attribute.options.remove(option)
                    return True
            raise MagentoError(
                404,
                'The "%1" attribute doesn\'t include an option with "%2" ID.',
                [code, option_id],
            )

    def options_json(self, code: str, store_id: int) -> list[dict[str, Any]]:
        """Options as the API lists them: Magento's empty placeholder first."""
        with self.lock:
            attribute = self.get_attribute(code)
            rows: list[dict[str, Any]] = [{"label": " ", "value": ""}]
            for option in attribute.options:
                row: dict[str, Any] = {
                    "label": option.store_labels.get(store_id, option.label),
                    "value": str(option.id),
                    "sort_order": option.sort_order,
                    "is_default": option.is_default,
                }
                if option.store_labels:
                    row["store_labels"] = [
                        {"store_id": sid, "label": text}
                        for sid, text in option.store_labels.items()
                    ]
                rows.append(row)
            return rows

    def attribute_json(self, code: str, store_id: int) -> dict[str, Any]:
        """`GET /V1/products/attributes/{code}`."""
        with self.lock:
            attribute = self.get_attribute(code)
            return {
                "attribute_id": attribute.attribute_id,
                "attribute_code": attribute.code,
                "frontend_input": attribute.frontend_input,
                "entity_type_id": "4",
                "is_required": False,
                "is_user_defined": True,
                "default_frontend_label": attribute.label,
                "frontend_labels": [],
                "scope": attribute.scope,
                "backend_type": "varchar" if attribute.frontend_input == "multiselect" else "int",
                "options": self.options_json(code, store_id),
            }

    # ------------------------------------------------------------------ categories
    def get_category(self, category_id: int) -> Category:
        """The category or Magento's 404."""
        category = self.categories.get(category_id)
        if category is None:
            raise no_such_entity("id", category_id)
        return category

    def _path(self, category: Category) -> list[int]:
        chain = [category.id]
        while chain[-1] != ROOT_CATEGORY_ID:
            chain.append(self.categories[chain[-1]].parent_id)
        return list(reversed(chain))

    def _children_of(self, category_id: int) -> list[Category]:
        found = [
            c
            for c in self.categories.values()
            if c.parent_id == category_id and c.id != category_id
        ]
        return sorted(found, key=lambda c: (c.position, c.id))

    def create_category(self, scope: Scope, data: dict[str, Any]) -> Category:
        """`POST /V1/categories`: a new category, appended after its siblings."""
        with self.lock:
            values = self._incoming_values(data, CATEGORY_TOP_LEVEL)
            if not str(values.get("name") or "").strip():
                raise bad_request(
                    'The "Name" attribute value is empty. Set the attribute and try again.'
                )
            parent_id = int(data.get("parent_id") or DEFAULT_CATEGORY_ID)
            self.get_category(parent_id)
            siblings = self._children_of(parent_id)
            position = (
                int(data["position"])
                if "position" in data
                else (max((c.position for c in siblings), default=0) + 1)
            )
            now = stamp(self.clock())
            values.setdefault("is_active", True)
            values.setdefault("include_in_menu", True)
            if "url_key" not in values:
                values["url_key"] = slugify(str(values["name"]))
            category = Category(self._next_category_id, parent_id, position, now, now, {0: values})
            category.available_sort_by = [str(v) for v in data.get("available_sort_by") or []]
            self._next_category_id += 1
            self.categories[category.id] = category
            return category

    def update_category(self, scope: Scope, category_id: int, data: dict[str, Any]) -> Category:
        """`PUT /V1/categories/{id}`: store-scoped values land in the URL's store."""
        with self.lock:
            category = self.get_category(category_id)
            values = self._incoming_values(data, CATEGORY_TOP_LEVEL)
            for code, value in values.items():
                category.values.setdefault(scope.store_id, {})[code] = value
            if "position" in data:
                category.position = int(data["position"])
            if "available_sort_by" in data:
                category.available_sort_by = [str(v) for v in data["available_sort_by"]]
            category.updated_at = stamp(self.clock())
            return category

    def move_category(self, category_id: int, parent_id: int, after_id: int | None) -> bool:
        """`PUT /V1/categories/{id}/move`."""
        with self.lock:
            category = self.get_category(category_id)
            parent = self.categories.get(parent_id)
            if parent is None:
                raise no_such_entity("id", parent_id)
            if category_id in self._path(parent):
                raise bad_request(
                    "Operation do not allow to move a parent category to any of children category"
                )
            siblings = [c for c in self._children_of(parent_id) if c.id != category_id]
            if after_id is None:
                # Magento 2.4 appends after the last child when afterId is omitted.
                index = len(siblings)
            else:
                ids = [c.id for c in siblings]
                index = ids.index(after_id) + 1 if after_id in ids else 0
            siblings.insert(index, category)
            category.parent_id = parent_id
            for position, sibling in enumerate(siblings, start=1):
                sibling.position = position
            category.updated_at = stamp(self.clock())
            return True

    def delete_category(self, category_id: int) -> bool:
        """Delete a category with its subtree and drop product links to it."""
        with self.lock:
            self.get_category(category_id)
            if category_id in (ROOT_CATEGORY_ID, DEFAULT_CATEGORY_ID):
                raise bad_request("Cannot delete the root category.")
            doomed = {c.id for c in self.categories.values() if category_id in self._path(c)}
            for cid in doomed:
                del self.categories[cid]
            gone = {str(c) for c in doomed}
            for product in self.products.values():
                product.category_links = [
                    link for link in product.category_links if link["category_id"] not in gone
                ]
            return True

    def category_json(self, category: Category, store_id: int) -> dict[str, Any]:
        """The category as `GET /V1/categories/{id}` returns it."""
        merged = category.merged(store_id)
        path = self._path(category)
        body: dict[str, Any] = {
            "id": category.id,
            "parent_id": category.parent_id,
            "name": str(merged.get("name", "")),
            "is_active": bool(merged.get("is_active", True)),
            "position": category.position,
            "level": len(path) - 1,
            "children": ",".join(str(c.id) for c in self._children_of(category.id)),
            "created_at": category.created_at,
            "updated_at": category.updated_at,
            "path": "/".join(str(p) for p in path),
            "available_sort_by": list(category.available_sort_by),
            "include_in_menu": bool(merged.get("include_in_menu", True)),
            "custom_attributes": [
                {"attribute_code": code, "value": value}
                for code, value in merged.items()
                if code not in CATEGORY_TOP_LEVEL
            ],
        }
        return body

    def category_tree(self, root_id: int, store_id: int, depth: int | None) -> dict[str, Any]:
        """`GET /V1/categories`: the tree below a root."""
        with self.lock:
            root = self.get_category(root_id)
            counts: Counter[str] = Counter(
                link["category_id"] for p in self.products.values() for link in p.category_links
            )

            def node(category: Category, level_left: int | None) -> dict[str, Any]:
                merged = category.merged(store_id)
                kids = self._children_of(category.id) if level_left != 0 else []
                nxt = None if level_left is None else level_left - 1
                return {
                    "id": category.id,
                    "parent_id": category.parent_id,
                    "name": str(merged.get("name", "")),
                    "is_active": bool(merged.get("is_active", True)),
                    "position": category.position,
                    "level": len(self._path(category)) - 1,
                    "product_count": counts[str(category.id)],
                    "children_data": [node(k, nxt) for k in kids],
                }

            return node(root, depth)

    # ------------------------------------------------------------------ bulk
    def add_bulk(self, bulk: Bulk) -> None:
        """Register an accepted bulk."""
        with self.lock:
            self.bulks[bulk.uuid] = bulk
            self._pending.extend(op for op in bulk.operations if op.status == STATUS_OPEN)

    def next_operation_id(self) -> int:
        """Operation ids are global, as in `magento_operation`."""
        with self.lock:
            value = self._next_operation_id
            self._next_operation_id += 1
            return value

    def run_bulk_consumer(self) -> int:
        """Process every open async operation now (`bin/magento queue:consumers:start`)."""
        if self.bulk_consumer is None:
            raise RuntimeError("no sandbox app is attached to this state")
        return self.bulk_consumer(due_only=False)

    def get_bulk(self, uuid: str) -> Bulk:
        """The bulk or Magento's 404."""
        bulk = self.bulks.get(uuid)
        if bulk is None:
            raise MagentoError(404, "Bulk uuid %bulkUuid not exist", {"bulkUuid": uuid})
        return bulk

    def open_operations(self, *, due_only: bool) -> list[BulkOperation]:
        """Operations still open, oldest first; `due_only` skips those not ready yet."""
        with self.lock:
            now = self.clock()
            self._pending = [op for op in self._pending if op.status == STATUS_OPEN]
            return [op for op in self._pending if not due_only or op.ready_at <= now]

    # ------------------------------------------------------------------ inspection
    def product_values(self, sku: str) -> dict[str, dict[str, Any]]:
        """Raw values of a product per store code (`admin` = global), as stored."""
        with self.lock:
            product = self.get_product(sku)
            return {self.store_code(s): dict(v) for s, v in sorted(product.values.items()) if v}

    def product_view(self, sku: str, store: str = "default") -> dict[str, Any]:
        """The product JSON a GET through `/rest/<store>/V1/products/{sku}` would return."""
        with self.lock:
            scope = self.scope(store)
            if scope is None:
                raise KeyError(store)
            return self.product_json(self.get_product(sku), scope.store_id)

    def snapshot(self) -> dict[str, Any]:
        """Everything, JSON-able, for end-to-end checkers and debugging."""
        with self.lock:
            products = {}
            for sku, p in sorted(self.products.items()):
                products[sku] = {
                    "id": p.id,
                    "type_id": p.type_id,
                    "attribute_set_id": p.attribute_set_id,
                    "values": {
                        self.store_code(s): dict(v) for s, v in sorted(p.values.items()) if v
                    },
                    "website_ids": list(p.website_ids),
                    "category_links": copy.deepcopy(p.category_links),
                    "stock_item": copy.deepcopy(p.stock_item),
                    "media": [
                        {**m.as_json(), "sha256": m.content_sha256, "size": m.content_size}
                        for m in p.media
                    ],
                    "configurable_options": copy.deepcopy(p.configurable_options),
                    "children": [self._product_ids[i] for i in p.child_ids],
                }
            categories = {}
            for cid, c in sorted(self.categories.items()):
                categories[cid] = {
                    "parent_id": c.parent_id,
                    "position": c.position,
                    "path": "/".join(str(x) for x in self._path(c)),
                    "values": {
                        self.store_code(s): dict(v) for s, v in sorted(c.values.items()) if v
                    },
                }
            return {
                "products": products,
                "categories": categories,
                "attribute_options": {
                    code: {str(o.id): o.label for o in a.options}
                    for code, a in sorted(self.attributes.items())
                },
                "bulks": {
                    uuid: [op.status for op in b.operations] for uuid, b in self.bulks.items()
                },
                "requests": {
                    "total": self.stats.total,
                    "by_status": dict(self.stats.by_status),
                },
            }

    def option_id(self, code: str, label: str) -> str | None:
        """The id of an option by admin label, or None."""
        with self.lock:
            attribute = self.attributes.get(code)
            for option in attribute.options if attribute else []:
                if option.label == label:
                    return str(option.id)
            return None

    def record(self, record: RequestRecord) -> None:
        """Count an answered request."""
        with self.lock:
            self.stats.by_status[record.status] += 1
            self.stats.by_route[(record.method, record.template or "", record.status)] += 1
            self.stats.recent.append(record)


def _named_skus(filters: list[dict[str, Any]]) -> set[str] | None:
    """The SKUs a filter group can match when it only has `sku` eq / in filters, else None.

    `eq` compares numbers as numbers (as SQL does): a numeric value is not a plain name.
    """
    if not filters:
        return None
    named: set[str] = set()
    for flt in filters:
        cond = str(flt.get("condition_type") or "eq").lower()
        value = str(flt.get("value", ""))
        if str(flt.get("field", "")) != "sku" or cond not in ("eq", "in"):
            return None
        if cond == "in":
            named.update(w.strip() for w in value.split(","))
            continue
        try:
            float(value)
        except ValueError:
            named.add(value)
            continue
        return None
    return named
