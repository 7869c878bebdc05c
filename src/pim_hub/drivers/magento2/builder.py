"""Pure, rules-based builder: Akeneo entities (and their changes) -> Magento REST payloads.

No I/O here. The driver first asks `references()` what an entity needs from Magento (option
ids, category ids, images), resolves them, then calls `build_product()`.

Scopes: the admin payload (sent to `/rest/all`) carries global fields and the admin-locale /
default-channel value of localised attributes; each store view payload carries only that view's
localised values, so Magento's "use default value" flags of the other attributes stay set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pim_hub.drivers.magento2.config import AttributeRule, Magento2Config
from pim_hub.drivers.magento2.errors import MappingError
from pim_hub.schemas.events import Change

IDENTIFIER: Final = "pim_catalog_identifier"
TEXT: Final = "pim_catalog_text"
TEXTAREA: Final = "pim_catalog_textarea"
NUMBER: Final = "pim_catalog_number"
BOOLEAN: Final = "pim_catalog_boolean"
DATE: Final = "pim_catalog_date"
SIMPLE: Final = "pim_catalog_simpleselect"
MULTI: Final = "pim_catalog_multiselect"
PRICE: Final = "pim_catalog_price_collection"
METRIC: Final = "pim_catalog_metric"
IMAGE: Final = "pim_catalog_image"
SELECT_TYPES: Final = frozenset({SIMPLE, MULTI})

#: Product fields Magento carries at the top level of the product JSON.
TOP_LEVEL: Final = frozenset({"name", "price", "status", "visibility", "weight"})
#: Magento attributes whose scope is global in a stock installation: admin payload only.
GLOBAL_ATTRIBUTES: Final = frozenset({"price", "weight", "special_price", "cost", "msrp"})
STATUS_ENABLED: Final = 1
STATUS_DISABLED: Final = 2

# Conversion factors to the base unit of each Akeneo measurement family.
_UNITS: Final[dict[str, Decimal]] = {
    # Weight (kilogram)
    "MILLIGRAM": Decimal("0.000001"),
    "GRAM": Decimal("0.001"),
    "KILOGRAM": Decimal(1),
    "TON": Decimal(1000),
    "OUNCE": Decimal("0.028349523125"),
    "POUND": Decimal("0.45359237"),
    # Length (meter)
    "MILLIMETER": Decimal("0.001"),
    "CENTIMETER": Decimal("0.01"),
    "DECIMETER": Decimal("0.1"),
    "METER": Decimal(1),
    "KILOMETER": Decimal(1000),
    "INCH": Decimal("0.0254"),
    "FOOT": Decimal("0.3048"),
    "YARD": Decimal("0.9144"),
}
_FAMILY: Final[dict[str, str]] = {
    **dict.fromkeys(("MILLIGRAM", "GRAM", "KILOGRAM", "TON", "OUNCE", "POUND"), "Weight"),
    **dict.fromkeys(
        ("MILLIMETER", "CENTIMETER", "DECIMETER", "METER", "KILOMETER", "INCH", "FOOT", "YARD"),
        "Length",
    ),
}
MAGENTO_WEIGHT_UNITS: Final = {"kgs": "KILOGRAM", "lbs": "POUND"}
_DATE: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$")
_MEDIA_CODE: Final = re.compile(r"^[0-9a-f]/[0-9a-f]/[0-9a-f]/[0-9a-f]/[0-9a-f]{40}_")
_SLUG: Final = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """Magento's url_key of a text: lower case, runs of other characters become '-'."""
    return _SLUG.sub("-", text.lower()).strip("-")


# ---------------------------------------------------------------------------- attribute types
def infer_type(items: Sequence[Mapping[str, Any]]) -> str | None:
    """Guess an Akeneo attribute type from the shape of its values (last resort).

    Strings are ambiguous (text, simple select, date, image): declare select attributes in
    the rules or let the driver learn them from attribute mutations.
    """
    for item in items:
        data = item.get("data")
        if data is None:
            continue
        if isinstance(data, bool):
            return BOOLEAN
        if isinstance(data, int | float):
            return NUMBER
        if isinstance(data, dict) and "amount" in data and "unit" in data:
            return METRIC
        if isinstance(data, list):
            if data and all(isinstance(p, dict) and "currency" in p for p in data):
                return PRICE
            if all(isinstance(x, str) for x in data):
                return MULTI
            return None
        if isinstance(data, str):
            if _MEDIA_CODE.match(data):
                return IMAGE
            if _DATE.match(data):
                return DATE
            return TEXT
    return None


def known_type(
    code: str,
    items: Sequence[Mapping[str, Any]],
    config: Magento2Config,
    rule: AttributeRule | None,
    learned: Mapping[str, str],
) -> str | None:
    """The Akeneo type of an attribute as declared, carried by its values or learned; None
    when only its data's shape could tell (`resolve_type` then infers one).

    1. `attribute_types` declared in the integration config;
    2. the rule's own `type`;
    3. `attribute_type` carried by the values (Akeneo sends it with `with_attribute_options`
       and the hub keeps it when the source gave it);
    4. types learned from `attribute` mutations (kept in the mapping service).
    """
    if code in config.attribute_types:
        return config.attribute_types[code]
    if rule is not None and rule.type is not None:
        return rule.type
    for item in items:
        declared = item.get("attribute_type")
        if isinstance(declared, str):
            return declared
    return learned.get(code)


def resolve_type(
    code: str,
    items: Sequence[Mapping[str, Any]],
    config: Magento2Config,
    rule: AttributeRule | None,
    learned: Mapping[str, str],
) -> str | None:
    """The Akeneo type of an attribute: the one known (`known_type`), else inferred from
    the data's shape."""
    known = known_type(code, items, config, rule, learned)
    return known if known is not None else infer_type(items)


# ---------------------------------------------------------------------------- references
@dataclass(frozen=True, order=True)
class OptionRef:
    """An Akeneo option that must exist as a Magento option of `magento` (an attribute code)."""

    magento: str
    akeneo: str
    code: str


@dataclass(frozen=True)
class ImageRef:
    """An image value to put in the media gallery."""

    attribute: str
    file_code: str
    roles: tuple[str, ...]
    position: int


@dataclass
class Refs:
    """What an entity needs resolved before its payload can be built."""

    options: set[OptionRef] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    images: list[ImageRef] = field(default_factory=list)


@dataclass
class Resolved:
    """Magento ids of the references: (magento attribute, Akeneo option code) -> option id."""

    option_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    category_ids: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Mapped:
    rule: AttributeRule
    type: str
    items: list[Mapping[str, Any]]


def _rules(entity: Mapping[str, Any], config: Magento2Config) -> list[AttributeRule]:
    rules = [r for r in config.attributes if r.akeneo != config.identifier_attribute]
    if config.map_unlisted_attributes:
        listed = {r.akeneo for r in config.attributes}
        for code in sorted(entity.get("values") or {}):
            if code not in listed and code != config.identifier_attribute:
                rules.append(AttributeRule(akeneo=code, magento=code))
    return rules


def _mapped(
    entity: Mapping[str, Any], config: Magento2Config, learned: Mapping[str, str]
) -> list[_Mapped]:
    values: Mapping[str, list[Mapping[str, Any]]] = entity.get("values") or {}
    out = []
    for rule in _rules(entity, config):
        items = list(values.get(rule.akeneo) or [])
        type_ = resolve_type(rule.akeneo, items, config, rule, learned)
        if type_ is None:
            if not items:
                # Nothing to send and nothing known: a removal of an unknown attribute still
                # clears it as text.
                type_ = TEXT
            else:
                raise MappingError(f"cannot tell the Akeneo type of attribute {rule.akeneo!r}")
        out.append(_Mapped(rule, type_, items))
    return out


def _roles(rule: AttributeRule) -> tuple[str, ...]:
    if rule.roles:
        return tuple(rule.roles)
    if rule.magento in ("image", "small_image", "thumbnail", "swatch_image"):
        return (rule.magento,) if rule.magento != "image" else ("image", "small_image")
    return ()


def pick(items: Iterable[Mapping[str, Any]], locale: str | None, scope: str | None) -> Any:
    """The data of the item matching a locale and channel (None-scoped items match any)."""
    for item in items:
        loc, sc = item.get("locale"), item.get("scope")
        if (loc is None or loc == locale) and (sc is None or sc == scope):
            return item.get("data")
    return None


def _localised(items: Iterable[Mapping[str, Any]]) -> bool:
    return any(i.get("locale") is not None or i.get("scope") is not None for i in items)


def references(
    entity: Mapping[str, Any], config: Magento2Config, learned: Mapping[str, str]
) -> Refs:
    """Option codes, category codes and images a product (or model) payload needs."""
    refs = Refs(categories=set(entity.get("categories") or []))
    scopes = [(config.admin_locale, config.default_channel)]
    scopes += list(config.store_views().values())
    position = 1
    for m in _mapped(entity, config, learned):
        if m.type in SELECT_TYPES:
            for locale, scope in scopes:
                data = pick(m.items, locale, scope)
                codes = data if isinstance(data, list) else [data] if data else []
                refs.options.update(OptionRef(m.rule.magento, m.rule.akeneo, str(c)) for c in codes)
        elif m.type == IMAGE:
            data = pick(m.items, config.admin_locale, config.default_channel)
            if isinstance(data, str) and data:
                refs.images.append(ImageRef(m.rule.akeneo, data, _roles(m.rule), position))
                position += 1
    return refs


# ---------------------------------------------------------------------------- transforms
def _decimal(raw: Any) -> Decimal | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = Decimal(str(raw))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _text(number: Decimal) -> str:
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "") else text


def convert_metric(amount: Decimal, unit: str, target: str) -> Decimal:
    """Convert between units of one measurement family (Weight or Length).

    Raises:
        MappingError: an unknown unit or units of different families.
    """
    if unit == target:
        return amount
    if unit not in _UNITS or target not in _UNITS or _FAMILY[unit] != _FAMILY[target]:
        raise MappingError(f"cannot convert {unit} to {target}")
    return amount * _UNITS[unit] / _UNITS[target]


def transform(
    rule: AttributeRule,
    type_: str,
    data: Any,
    config: Magento2Config,
    currency: str | None,
    option_ids: Mapping[tuple[str, str], str],
) -> Any:
    """One Akeneo value as the Magento value of `rule.magento` (None: no value).

    Top-level numbers (price, weight) are JSON numbers; custom attributes are strings, as
    Magento's `custom_attributes[].value` must be (multiselect: comma-separated option ids).
    """
    if data is None or data == "" or data == []:
        return None
    top = rule.magento in TOP_LEVEL
    if type_ == BOOLEAN:
        return (1 if data else 0) if top else ("1" if data else "0")
    if type_ == NUMBER:
        number = _decimal(data)
        if number is None:
            raise MappingError(f"{rule.akeneo}: {data!r} is not a number")
        return float(number) if top else _text(number)
    if type_ == DATE:
        match = _DATE.match(str(data))
        if match is None:
            raise MappingError(f"{rule.akeneo}: {data!r} is not a date")
        return match.group(1)
    if type_ == PRICE:
        if not isinstance(data, list):
            raise MappingError(f"{rule.akeneo}: a price collection must be a list")
        for price in data:
            if isinstance(price, dict) and price.get("currency") == currency:
                number = _decimal(price.get("amount"))
                if number is None:
                    return None
                number = number.quantize(Decimal("0.0001"))
                return float(number) if top else _text(number)
        return None
    if type_ == METRIC:
        if not isinstance(data, dict):
            raise MappingError(f"{rule.akeneo}: a metric must be an object")
        number = _decimal(data.get("amount"))
        if number is None:
            return None
        unit = str(data.get("unit") or "")
        target = rule.unit or (
            MAGENTO_WEIGHT_UNITS[config.weight_unit] if rule.magento == "weight" else None
        )
        if target is not None:
            number = convert_metric(number, unit, target)
        number = number.quantize(Decimal("0.0001"))
        return float(number) if top else _text(number)
    if type_ in SELECT_TYPES:
        codes = data if isinstance(data, list) else [data]
        ids = []
        for code in codes:
            found = option_ids.get((rule.magento, str(code)))
            if found is None:
                raise MappingError(f"{rule.akeneo}: option {code!r} has no Magento option id")
            ids.append(found)
        return ",".join(ids) if type_ == MULTI else ids[0]
    if isinstance(data, dict | list):
        raise MappingError(f"{rule.akeneo}: type {type_} has no transform")
    return str(data)


# ---------------------------------------------------------------------------- products
@dataclass
class ProductPayload:
    """What to send for one product: admin body, per-store-view bodies, images.

    `admin` and each store body are `catalog-data-product-interface` objects (with `sku`).
    """

    sku: str
    admin: dict[str, Any]
    stores: dict[str, dict[str, Any]]
    images: list[ImageRef]


def identifier_of(entity: Mapping[str, Any], config: Magento2Config) -> str:
    """The SKU: Akeneo's `identifier`, else the identifier attribute's value, else a model code.

    Raises:
        MappingError: no identifier at all.
    """
    ident = entity.get("identifier")
    if isinstance(ident, str) and ident:
        return ident
    data = pick((entity.get("values") or {}).get(config.identifier_attribute) or [], None, None)
    if isinstance(data, str) and data:
        return data
    code = entity.get("code")
    if isinstance(code, str) and code:
        return code
    raise MappingError(f"the product has no {config.identifier_attribute!r} value")


def _put(body: dict[str, Any], code: str, value: Any) -> None:
    if code in TOP_LEVEL:
        body[code] = value
    else:
        body.setdefault("custom_attributes", []).append({"attribute_code": code, "value": value})


def own_store_views(config: Magento2Config) -> dict[str, tuple[str, str | None]]:
    """Store views that can hold values of their own: (locale, channel) per view.

    A view of the admin locale on the default channel would only ever repeat the admin
    values: it inherits them instead (no request, and no store-level copy that an admin
    change would leave behind).
    """
    admin = (config.admin_locale, config.default_channel)
    return {v: scope for v, scope in config.store_views().items() if scope != admin}


def _field_values(
    entity: Mapping[str, Any],
    config: Magento2Config,
    learned: Mapping[str, str],
    resolved: Resolved,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[ImageRef]]:
    """Every mapped value: admin {magento code: value}, per store view, and images."""
    admin: dict[str, Any] = {}
    views = own_store_views(config)
    stores: dict[str, dict[str, Any]] = {v: {} for v in views}
    images: list[ImageRef] = []
    position = 1
    for m in _mapped(entity, config, learned):
        rule = m.rule
        if m.type == IMAGE:
            data = pick(m.items, config.admin_locale, config.default_channel)
            if isinstance(data, str) and data:
                images.append(ImageRef(rule.akeneo, data, _roles(rule), position))
                position += 1
            continue
        data = pick(m.items, config.admin_locale, config.default_channel)
        admin[rule.magento] = transform(
            rule, m.type, data, config, config.default_currency, resolved.option_ids
        )
        if rule.magento in GLOBAL_ATTRIBUTES or not _localised(m.items):
            continue
        currency_of = {v: w.currency for w in config.websites for v in w.store_views}
        for view, (locale, channel) in views.items():
            data = pick(m.items, locale, channel)
            stores[view][rule.magento] = transform(
                rule,
                m.type,
                data,
                config,
                currency_of.get(view, config.default_currency),
                resolved.option_ids,
            )
    return admin, stores, images


def affected_fields(
    changes: Sequence[Change], entity: Mapping[str, Any], config: Magento2Config
) -> tuple[set[str], dict[str, set[str]], bool]:
    """Which Magento fields a mutation's changes touch: admin, per store view, and media.

    Returns:
        (admin field codes, {store view: field codes}, whether images changed)
    """
    admin: set[str] = set()
    stores: dict[str, set[str]] = {}
    media = False
    by_akeneo: dict[str, list[AttributeRule]] = {}
    for rule in _rules(entity, config):
        by_akeneo.setdefault(rule.akeneo, []).append(rule)
    views = own_store_views(config)
    for change in changes:
        if change.field == "enabled":
            admin.add("status")
        elif change.field == "family":
            admin.add("attribute_set_id")
        elif change.field == "categories":
            admin.add("category_links")
        elif change.field == "parent":
            admin.add("visibility")
        elif change.field == "values" and change.attribute is not None:
            loc, scope = change.locale, change.scope
            for rule in by_akeneo.get(change.attribute, []):
                if rule.magento in ("image", "small_image", "thumbnail") or rule.roles:
                    media = True
                if (loc is None or loc == config.admin_locale) and (
                    scope is None or scope == config.default_channel
                ):
                    admin.add(rule.magento)
                if rule.magento in GLOBAL_ATTRIBUTES or (loc is None and scope is None):
                    continue
                for view, (locale, channel) in views.items():
                    if (loc is None or loc == locale) and (scope is None or scope == channel):
                        stores.setdefault(view, set()).add(rule.magento)
    return admin, stores, media


def build_product(
    entity: Mapping[str, Any],
    config: Magento2Config,
    learned: Mapping[str, str],
    resolved: Resolved,
    *,
    type_id: str = "simple",
    changes: Sequence[Change] | None = None,
) -> ProductPayload:
    """Build the payloads of a product (type `simple`) or product model (`configurable`).

    Args:
        entity: the Akeneo-shaped product or product model (the mutation's state).
        config: the integration config (rules, scopes, mappings).
        learned: Akeneo attribute types learned from attribute mutations.
        resolved: option and category ids of `references(entity, ...)`.
        type_id: Magento product type.
        changes: None builds everything (creation); otherwise only the fields these changes
            touch, with removed values cleared ("" for custom attributes).

    Raises:
        MappingError: a value that the rules cannot map.
    """
    sku = identifier_of(entity, config)
    values, store_values, images = _field_values(entity, config, learned, resolved)
    is_variant = type_id == "simple" and bool(entity.get("parent"))
    family = entity.get("family")
    structural: dict[str, Any] = {
        "status": STATUS_ENABLED if entity.get("enabled", True) else STATUS_DISABLED,
        "attribute_set_id": config.attribute_sets.get(str(family), config.default_attribute_set_id),
        "visibility": config.variant_visibility if is_variant else config.visibility,
    }
    links = [
        {"position": 0, "category_id": str(resolved.category_ids[c])}
        for c in sorted(entity.get("categories") or [])
        if c in resolved.category_ids
    ]
    admin: dict[str, Any] = {"sku": sku}
    stores: dict[str, dict[str, Any]] = {}
    if changes is None:
        admin["type_id"] = type_id
        admin.update(structural)
        admin["extension_attributes"] = {
            "website_ids": [w.id for w in config.websites],
            "category_links": links,
        }
        for code, value in values.items():
            if value is not None:
                _put(admin, code, value)
        for view, fields in store_values.items():
            body = {"sku": sku}
            for code, value in fields.items():
                if value is not None:
                    _put(body, code, value)
            if len(body) > 1:
                stores[view] = body
        return ProductPayload(sku, admin, stores, images)
    touched, touched_stores, media = affected_fields(changes, entity, config)
    for code in sorted(touched):
        if code in structural:
            admin[code] = structural[code]
        elif code == "category_links":
            admin["extension_attributes"] = {"category_links": links}
        elif code in values:
            _clear_or_put(admin, code, values[code])
    for view, codes in sorted(touched_stores.items()):
        body = {"sku": sku}
        for code in sorted(codes):
            if code in store_values.get(view, {}):
                _clear_or_put(body, code, store_values[view][code])
        if len(body) > 1:
            stores[view] = body
    return ProductPayload(sku, admin, stores, images if media else [])


def _clear_or_put(body: dict[str, Any], code: str, value: Any) -> None:
    if value is not None:
        _put(body, code, value)
    elif code not in TOP_LEVEL:
        # Magento has no "unset" over REST; an empty string clears a custom attribute.
        _put(body, code, "")


def is_empty_update(payload: ProductPayload) -> bool:
    """True when an update touches nothing Magento knows (only unmapped attributes changed)."""
    return len(payload.admin) == 1 and not payload.stores and not payload.images


# ---------------------------------------------------------------------------- configurables
def configurable_option(
    attribute_id: int, label: str, position: int, value_ids: Iterable[str]
) -> dict[str, Any]:
    """A `configurable-product-data-option-interface` body."""
    return {
        "attribute_id": str(attribute_id),
        "label": label,
        "position": position,
        "is_use_default": True,
        "values": [{"value_index": int(v)} for v in sorted(set(value_ids), key=int)],
    }


def axis_rules(axes: Sequence[str], config: Magento2Config) -> list[AttributeRule]:
    """The rules of a family variant's axes (an axis needs a rule to reach Magento).

    Raises:
        MappingError: an axis without a rule.
    """
    by_code = {r.akeneo: r for r in config.attributes}
    out = []
    for axis in axes:
        rule = by_code.get(axis)
        if rule is None:
            if not config.map_unlisted_attributes:
                raise MappingError(f"variant axis {axis!r} has no attribute rule")
            rule = AttributeRule(akeneo=axis, magento=axis)
        out.append(rule)
    return out


# ---------------------------------------------------------------------------- categories
def category_name(entity: Mapping[str, Any], locale: str) -> str:
    """A category's label in a locale, else its code."""
    labels = entity.get("labels") or {}
    label = labels.get(locale)
    return str(label) if label else str(entity["code"])


def build_category(
    entity: Mapping[str, Any], config: Magento2Config, parent_id: int
) -> dict[str, Any]:
    """The `catalog-data-category-interface` of a new category (admin values)."""
    return {
        "parent_id": parent_id,
        "name": category_name(entity, config.admin_locale),
        "is_active": True,
        "include_in_menu": True,
        "custom_attributes": [{"attribute_code": "url_key", "value": slugify(str(entity["code"]))}],
    }


def category_store_names(entity: Mapping[str, Any], config: Magento2Config) -> dict[str, str]:
    """Store view code -> category name, for views whose locale has a label."""
    labels = entity.get("labels") or {}
    out = {}
    for view, (locale, _) in own_store_views(config).items():
        if labels.get(locale):
            out[view] = str(labels[locale])
    return out


# ---------------------------------------------------------------------------- options
def build_option(
    code: str, labels: Mapping[str, Any], config: Magento2Config, store_ids: Mapping[str, int]
) -> dict[str, Any]:
    """An `eav-data-attribute-option-interface`: admin label = the Akeneo option code.

    The code as admin label keeps the option findable by code (idempotent creation), and the
    store labels carry Akeneo's translations.
    """
    store_labels = []
    for view, (locale, _) in sorted(config.store_views().items()):
        if view in store_ids and labels.get(locale):
            store_labels.append({"store_id": store_ids[view], "label": str(labels[locale])})
    option: dict[str, Any] = {"label": code, "value": "", "sort_order": 0, "is_default": False}
    if store_labels:
        option["store_labels"] = store_labels
    return option
