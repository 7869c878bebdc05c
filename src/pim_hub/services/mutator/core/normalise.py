"""Turns Akeneo payloads into compact indexed states (plain JSON dicts) and back again."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final

import orjson

from pim_hub.schemas.entities import ENTITY_TYPES, entity_key
from pim_hub.schemas.errors import InvalidSnapshot
from pim_hub.schemas.limits import MAX_VALUE_CHARS

# Indexed state layout (JSON-serialisable as-is, so the Faust table stores it without a codec):
#
#   {"t": entity_type, "v": version or None,
#    "c": {slot: comparison string},   # canonical JSON text; equal strings <=> equal content
#    "s": {slot: source JSON},         # only for slots whose source is not json.loads(c[slot])
#    "a": {attribute: attribute type}, # as declared by the payload (values' `attribute_type`)
#    "x": {field: source JSON},        # kept, not compared: read-only fields (EXTRA_FIELDS)
#    "l": {slot: linked_data}}         # kept, not compared: a value's `linked_data`
#
# "x" and "l" are present only when the payload had such fields, so the states of payloads
# without them (and states stored before they existed) are unchanged.
#
# A slot is one field-level unit of change: "enabled", "categories", "labels|fr_FR",
# "values|<attr>|<locale>|<scope>" (empty string for null), "associations|X_SELL.products", ...
# Comparison strings are hashable and compared with `!=`, which keeps the diff a tight loop
# over two flat dicts; keeping the source text separately lets outputs show "12.5000" as
# Akeneo sent it while "12.5" compares equal.

TYPE_KEY: Final = "t"
VERSION_KEY: Final = "v"
CMP_KEY: Final = "c"
SRC_KEY: Final = "s"
TYPES_KEY: Final = "a"
EXTRA_KEY: Final = "x"
LINKED_KEY: Final = "l"
DELETED_KEY: Final = "deleted"
#: [id, created_at in epoch ms] of the entity's last mutation: the next one names it, so that
#: its jobs cannot overtake that one's in another priority lane (pim_hub.schemas.ordering).
#: Never compared: set by the mutator's agent after each decision.
CHAIN_KEY: Final = "m"

#: pseudo-field used by diff/apply to carry attribute types; never part of a mutation.
TYPES_FIELD: Final = "_attribute_types"

# Field kinds: how a top-level field is split into slots and compared.
SCALAR: Final = "scalar"  # one slot, exact JSON equality (also every unknown field)
DECIMAL: Final = "decimal"  # one slot, compared as a decimal number
SET: Final = "set"  # one slot, order-insensitive code list (added/removed)
LABELS: Final = "labels"  # slot per locale  -> Change.locale
KEYED: Final = "keyed"  # slot per key     -> Change.attribute (channel conversion units)
SET_BY_SCOPE: Final = "set_by_scope"  # set per channel -> Change.scope (attribute requirements)
VALUES: Final = "values"  # slot per (attribute, locale, scope)
ASSOCIATIONS: Final = "associations"  # set per "<TYPE>.<target kind>" -> Change.attribute
QUANTIFIED: Final = "quantified_associations"  # list per "<TYPE>.<target kind>"
VARIANT_SETS: Final = "variant_attribute_sets"  # "<level>.axes" (ordered), "<level>.attributes"

FIELD_KINDS: Final[dict[str, str]] = {
    "number_min": DECIMAL,
    "number_max": DECIMAL,
    "max_file_size": DECIMAL,
    "categories": SET,
    "groups": SET,
    "attributes": SET,
    "common_attributes": SET,
    "available_locales": SET,
    "allowed_extensions": SET,
    "locales": SET,
    "currencies": SET,
    "channel_requirements": SET,
    "labels": LABELS,
    "group_labels": LABELS,
    "conversion_units": KEYED,
    "attribute_requirements": SET_BY_SCOPE,
    "values": VALUES,
    "associations": ASSOCIATIONS,
    "quantified_associations": QUANTIFIED,
    "variant_attribute_sets": VARIANT_SETS,
}

# Read-only or derived fields: they change without the entity changing (timestamps, scores,
# EE workflow status, HAL links), so diffing them would emit mutations nobody asked for.
# They are not compared but kept (EXTRA_KEY) and given back in the state as the source sent
# them; `updated` is the state's version and comes back from it.
EXTRA_FIELDS: Final[frozenset[str]] = frozenset(
    {"_links", "created", "metadata", "quality_scores", "completenesses"}
)
IGNORED_FIELDS: Final[frozenset[str]] = EXTRA_FIELDS | {"updated"}

# Known fields per entity type and the default the denormalised state shows when absent.
_DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "product": {
        "uuid": None,
        "identifier": None,
        "enabled": None,
        "family": None,
        "categories": [],
        "groups": [],
        "parent": None,
        "values": {},
        "associations": {},
        "quantified_associations": {},
    },
    "product_model": {
        "code": None,
        "family": None,
        "family_variant": None,
        "parent": None,
        "categories": [],
        "values": {},
        "associations": {},
        "quantified_associations": {},
    },
    "category": {"code": None, "parent": None, "labels": {}},
    "family": {
        "code": None,
        "attribute_as_label": None,
        "attribute_as_image": None,
        "attributes": [],
        "attribute_requirements": {},
        "labels": {},
    },
    "family_variant": {
        "code": None,
        "common_attributes": [],
        "variant_attribute_sets": [],
        "labels": {},
    },
    "attribute": {
        "code": None,
        "type": None,
        "group": None,
        "labels": {},
        "localizable": None,
        "scopable": None,
        "unique": None,
    },
    "attribute_option": {"code": None, "attribute": None, "sort_order": None, "labels": {}},
    "channel": {
        "code": None,
        "locales": [],
        "currencies": [],
        "category_tree": None,
        "conversion_units": {},
        "labels": {},
    },
    "locale": {"code": None, "enabled": None},
}

# Expected JSON types of well-known scalar fields; anything else is opaque.
_STR = (str,)
_SCALAR_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "uuid": _STR,
    "identifier": _STR,
    "code": _STR,
    "family": _STR,
    "parent": _STR,
    "family_variant": _STR,
    "type": _STR,
    "group": _STR,
    "attribute": _STR,
    "attribute_as_label": _STR,
    "attribute_as_image": _STR,
    "category_tree": _STR,
    "enabled": (bool,),
    "localizable": (bool,),
    "scopable": (bool,),
    "unique": (bool,),
    "sort_order": (int,),
    "position": (int,),
}

# Attribute types whose value needs more than JSON equality.
NUMBER_TYPES: Final = frozenset({"pim_catalog_number"})
METRIC_TYPE: Final = "pim_catalog_metric"
PRICE_TYPE: Final = "pim_catalog_price_collection"
DATE_TYPE: Final = "pim_catalog_date"
# Multi-valued attributes where the order of codes carries no meaning. Asset collections are
# deliberately absent: their first asset is the main image, so their order matters.
SET_VALUE_TYPES: Final = frozenset(
    {
        "pim_catalog_multiselect",
        "pim_catalog_reference_data_multi_select",
        "akeneo_reference_entity_collection",
    }
)

_ABSENT: Final[Any] = object()
# Types whose *string* data is not compared as plain text.
_STRING_SPECIAL_TYPES: Final = NUMBER_TYPES | {DATE_TYPE}
_DATE_RE: Final = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[T ]00:00:00(?:\.0+)?(?:Z|[+-]00:?00)?)?")
_OPT: Final = orjson.OPT_SORT_KEYS


def dumps(value: Any) -> str:
    """Canonical JSON text (sorted keys) of a JSON value."""
    return orjson.dumps(value, option=_OPT).decode()


def _dumps_str(value: str) -> str:
    return orjson.dumps(value).decode()


@lru_cache(maxsize=8192)
def _canonical_decimal_text(raw: str) -> str | None:
    # Prices and amounts repeat a lot across a catalogue; Decimal parsing is the costly part.
    return _canonical_decimal(raw)


def canonical_decimal(raw: Any) -> str | None:
    """Return the canonical text of a decimal ("12.5000" -> "12.5"), or None if not a number.

    Args:
        raw: an Akeneo decimal string, an int or a float (bools are not numbers here).
    """
    if type(raw) is str:
        return _canonical_decimal_text(raw) if len(raw) <= 64 else _canonical_decimal(raw)
    return _canonical_decimal(raw)


def _canonical_decimal(raw: Any) -> str | None:
    if isinstance(raw, bool):
        return None
    try:
        # repr() keeps the shortest round-trip text of a float (0.1 stays 0.1, not 0.1000000...)
        number = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    except (InvalidOperation, TypeError, ValueError):
        return None
    if not number.is_finite():
        return None
    if number.is_zero():
        return "0"
    number = number.normalize()
    if abs(number.adjusted()) > 60:
        # Positional form of 1E+999999 would be a megabyte of zeros; scientific is canonical too.
        return str(number)
    return format(number, "f")


def _decimal_or_raw(raw: Any) -> Any:
    canonical = canonical_decimal(raw)
    return raw if canonical is None else canonical


def normalise_value(data: Any, attribute_type: str | None) -> Any:
    """Return the comparison form of one product value's `data` (or _ABSENT when empty).

    Strings are compared as decimals only when the attribute type says number: a text attribute
    holding "1.0" must still report a change to "1.00".
    """
    kind = type(data)
    if kind is str:
        if not data:
            return _ABSENT
        if attribute_type in NUMBER_TYPES:
            return _decimal_or_raw(data)
        if attribute_type == DATE_TYPE:
            match = _DATE_RE.fullmatch(data)
            return match.group(1) if match else data
        return data
    if data is None or kind is bool:
        return _ABSENT if data is None else data
    if kind is int or kind is float:
        return _decimal_or_raw(data)
    if kind is dict:
        if not data:
            return _ABSENT
        if attribute_type == METRIC_TYPE or (
            attribute_type is None and "amount" in data and "unit" in data
        ):
            # `symbol` is derived from the unit; comparing it would only add noise.
            return {"amount": _decimal_or_raw(data.get("amount")), "unit": data.get("unit")}
        return data
    if kind is list:
        if not data:
            return _ABSENT
        if attribute_type == PRICE_TYPE or (
            attribute_type is None and all(isinstance(p, dict) and "currency" in p for p in data)
        ):
            prices: dict[str, Any] = {}
            for price in data:
                if not isinstance(price, dict) or not isinstance(price.get("currency"), str):
                    return data  # not a price shape after all: compare as opaque JSON
                prices[price["currency"]] = _decimal_or_raw(price.get("amount"))
            return prices
        if attribute_type in SET_VALUE_TYPES and all(isinstance(x, str) for x in data):
            return sorted(set(data))
        return data
    return data


def _invalid(entity_type: str, reason: str) -> InvalidSnapshot:
    return InvalidSnapshot(reason, entity_type=entity_type)


def _code_list(entity_type: str, where: str, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise _invalid(entity_type, f"'{where}' must be a list of codes")
    return sorted(set(raw))


def _too_large(slot: str, size: int) -> InvalidSnapshot:
    return InvalidSnapshot(
        f"value {slot!r} is {size} characters of JSON; at most {MAX_VALUE_CHARS} are accepted",
        code="value_too_large",
    )


def _put(c: dict[str, str], s: dict[str, Any], slot: str, canon: Any, src: Any) -> None:
    cmp = dumps(canon)
    if len(cmp) > MAX_VALUE_CHARS:
        raise _too_large(slot, len(cmp))
    c[slot] = cmp
    # Store the source only when the comparison text cannot give it back, which keeps
    # plain text, booleans and code lists stored once.
    if canon is not src and dumps(src) != cmp:
        s[slot] = src
    else:
        s.pop(slot, None)


def _quantified_canon(entity_type: str, where: str, raw: Any) -> list[list[Any]]:
    if not isinstance(raw, list):
        raise _invalid(entity_type, f"'{where}' must be a list")
    pairs: dict[str, Any] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise _invalid(entity_type, f"'{where}' items must be objects")
        target = item.get("uuid") or item.get("identifier") or item.get("code")
        quantity = item.get("quantity")
        if (
            not isinstance(target, str)
            or isinstance(quantity, bool)
            or not isinstance(quantity, int)
        ):
            raise _invalid(entity_type, f"'{where}' items need a target code and an int quantity")
        pairs[target] = quantity
    return [[k, pairs[k]] for k in sorted(pairs)]


# Slot names repeat across every product of a catalogue. Sharing one string object per slot
# keeps states smaller and lets the diff compare slot lists mostly by identity, which is what
# makes it fast on states that are not in the CPU cache any more.
_SLOT_CACHE: Final[dict[tuple[str, str | None, str | None], str]] = {}
_SLOT_CACHE_MAX: Final = 200_000
_slot_get = _SLOT_CACHE.get


def _value_slot(attribute: str, locale: str | None, scope: str | None) -> str:
    slot = f"values|{attribute}|{locale or ''}|{scope or ''}"
    if len(_SLOT_CACHE) >= _SLOT_CACHE_MAX:
        _SLOT_CACHE.clear()  # a bound, not an LRU: a catalogue has far fewer slots than this
    _SLOT_CACHE[(attribute, locale, scope)] = slot
    return slot


def _index_values(
    entity_type: str,
    raw: Any,
    c: dict[str, str],
    s: dict[str, Any],
    a: dict[str, str],
    attribute_types: dict[str, str] | None,
    linked: dict[str, Any] | None = None,
) -> None:
    if not isinstance(raw, dict):
        raise _invalid(entity_type, "'values' must be an object")
    if entity_type == "category":
        _index_category_values(entity_type, raw, c, s, a)
        return
    for attribute, items in raw.items():
        if not attribute or "|" in attribute:
            raise _invalid(entity_type, f"invalid attribute code {attribute!r} in 'values'")
        if not isinstance(items, list):
            raise _invalid(entity_type, f"'values.{attribute}' must be a list")
        attribute_type: str | None = None
        for item in items:
            if not isinstance(item, dict):
                raise _invalid(entity_type, f"'values.{attribute}' items must be objects")
            declared = item.get("attribute_type")
            if isinstance(declared, str):
                attribute_type = declared
                break
        if attribute_type is None and attribute_types:
            attribute_type = attribute_types.get(attribute)
        if attribute_type is not None:
            a[attribute] = attribute_type
        for item in items:
            # The scan above stops at the item declaring the type; later items are checked here.
            if type(item) is not dict:
                raise _invalid(entity_type, f"'values.{attribute}' items must be objects")
            locale = item.get("locale")
            scope = item.get("scope")
            if (locale is not None and type(locale) is not str) or (
                scope is not None and type(scope) is not str
            ):
                raise _invalid(entity_type, f"'values.{attribute}' locale/scope must be strings")
            data = item.get("data")
            slot = _slot_get((attribute, locale, scope))
            if slot is None:
                slot = _value_slot(attribute, locale, scope)
            if linked is not None and "linked_data" in item:
                # Akeneo's read-only labels of the option a value names (with_attribute_options):
                # kept for the state, not compared (the option's own entity carries its changes).
                linked[slot] = item["linked_data"]
            if type(data) is str and data and attribute_type not in _STRING_SPECIAL_TYPES:
                # Hot path (text, selects, media, identifiers): source == comparison form.
                text = _dumps_str(data)
                if len(text) > MAX_VALUE_CHARS:
                    raise _too_large(slot, len(text))
                c[slot] = text
                s.pop(slot, None)
                continue
            canon = normalise_value(data, attribute_type)
            if canon is _ABSENT:
                c.pop(slot, None)
                s.pop(slot, None)
            else:
                _put(c, s, slot, canon, data)


def _index_category_values(
    entity_type: str, raw: dict[str, Any], c: dict[str, str], s: dict[str, Any], a: dict[str, str]
) -> None:
    # Enriched categories key values "code|uuid[|channel][|locale]"; the attribute identity is
    # `attribute_code` ("code|uuid"), so slots are parsed from the right (see parse_slot).
    for key, item in raw.items():
        if not isinstance(item, dict):
            raise _invalid(entity_type, f"'values.{key}' must be an object")
        attribute = item.get("attribute_code") or key
        locale = item.get("locale")
        channel = item.get("channel")
        if (
            not isinstance(attribute, str)
            or (locale is not None and not isinstance(locale, str))
            or (channel is not None and not isinstance(channel, str))
        ):
            raise _invalid(entity_type, f"'values.{key}' has mistyped attribute/locale/channel")
        declared = item.get("type")
        if isinstance(declared, str):
            a[attribute] = declared
        data = item.get("data")
        canon = normalise_value(data, None)
        if canon is not _ABSENT:
            _put(c, s, f"values|{attribute}|{locale or ''}|{channel or ''}", canon, data)


def index_field(
    entity_type: str,
    field: str,
    raw: Any,
    c: dict[str, str],
    s: dict[str, Any],
    a: dict[str, str],
    attribute_types: dict[str, str] | None = None,
    linked: dict[str, Any] | None = None,
) -> None:
    """Add the slots of one top-level field to an indexed state under construction.

    `linked`, when given, collects the values' `linked_data` by slot.
    """
    kind = FIELD_KINDS.get(field, SCALAR)
    if raw is None:
        return
    if kind == SCALAR:
        expected = _SCALAR_TYPES.get(field)
        if expected is not None and (
            not isinstance(raw, expected) or (bool not in expected and isinstance(raw, bool))
        ):
            raise _invalid(
                entity_type, f"'{field}' must be {expected[0].__name__}, got {type(raw).__name__}"
            )
        if raw == "" and expected is _STR:
            return  # Akeneo uses "" and null interchangeably for "no family/parent"
        _put(c, s, field, raw, raw)
    elif kind == DECIMAL:
        canonical = canonical_decimal(raw)
        _put(c, s, field, raw if canonical is None else canonical, raw)
    elif kind == SET:
        codes = _code_list(entity_type, field, raw)
        if codes:
            c[field] = dumps(codes)
    elif kind in (LABELS, KEYED):
        if not isinstance(raw, dict):
            raise _invalid(entity_type, f"'{field}' must be an object")
        for key, value in raw.items():
            if value is None or value == "":
                continue  # an empty label is no label
            if kind == LABELS and not isinstance(value, str):
                raise _invalid(entity_type, f"'{field}.{key}' must be a string")
            _put(c, s, f"{field}|{key}", value, value)
    elif kind == SET_BY_SCOPE:
        if not isinstance(raw, dict):
            raise _invalid(entity_type, f"'{field}' must be an object")
        for key, value in raw.items():
            codes = _code_list(entity_type, f"{field}.{key}", value)
            if codes:
                c[f"{field}|{key}"] = dumps(codes)
    elif kind == VALUES:
        _index_values(entity_type, raw, c, s, a, attribute_types, linked)
    elif kind in (ASSOCIATIONS, QUANTIFIED):
        if not isinstance(raw, dict):
            raise _invalid(entity_type, f"'{field}' must be an object")
        for assoc_type, targets in raw.items():
            if not isinstance(targets, dict):
                raise _invalid(entity_type, f"'{field}.{assoc_type}' must be an object")
            for target_kind, target_list in targets.items():
                where = f"{field}.{assoc_type}.{target_kind}"
                slot = f"{field}|{assoc_type}.{target_kind}"
                if kind == ASSOCIATIONS:
                    codes = _code_list(entity_type, where, target_list)
                    if codes:
                        c[slot] = dumps(codes)
                else:
                    pairs = _quantified_canon(entity_type, where, target_list)
                    if pairs:
                        _put(c, s, slot, pairs, target_list)
    elif kind == VARIANT_SETS:
        if not isinstance(raw, list):
            raise _invalid(entity_type, f"'{field}' must be a list")
        for level_set in raw:
            if (
                not isinstance(level_set, dict)
                or isinstance(level_set.get("level"), bool)
                or (not isinstance(level_set.get("level"), int))
            ):
                raise _invalid(entity_type, f"'{field}' items need an int 'level'")
            level = level_set["level"]
            axes = level_set.get("axes") or []
            if not isinstance(axes, list) or not all(isinstance(x, str) for x in axes):
                raise _invalid(entity_type, f"'{field}[{level}].axes' must be a list of codes")
            if axes:
                c[f"{field}|{level}.axes"] = dumps(axes)
            codes = _code_list(
                entity_type, f"{field}[{level}].attributes", level_set.get("attributes") or []
            )
            if codes:
                c[f"{field}|{level}.attributes"] = dumps(codes)


_FROM_PAYLOAD: Final[Any] = object()


def index_state(
    entity_type: str,
    payload: dict[str, Any],
    *,
    version: Any = _FROM_PAYLOAD,
    attribute_types: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build the indexed state of an Akeneo payload.

    Args:
        entity_type: one of ENTITY_TYPES.
        payload: the Akeneo JSON object.
        version: source version to record; defaults to the payload's `updated`.
        attribute_types: attribute code -> Akeneo type, for values that do not declare
            `attribute_type` themselves (decides decimal/set comparison of bare values).

    Returns:
        A plain JSON-serialisable dict (see the layout at the top of this module).

    Raises:
        InvalidSnapshot: unknown entity type, missing identity, or mistyped fields.
    """
    entity_key(entity_type, payload)  # validates type, object-ness and identity
    c: dict[str, str] = {}
    s: dict[str, Any] = {}
    a: dict[str, str] = {}
    x: dict[str, Any] = {}
    linked: dict[str, Any] = {}
    for field, raw in payload.items():
        if field in IGNORED_FIELDS:
            if field in EXTRA_FIELDS and raw is not None:
                x[field] = raw
            continue
        index_field(entity_type, field, raw, c, s, a, attribute_types, linked)
    if version is _FROM_PAYLOAD:
        version = payload.get("updated")
        if not isinstance(version, str):
            version = None
    state = {TYPE_KEY: entity_type, VERSION_KEY: version, CMP_KEY: c, SRC_KEY: s, TYPES_KEY: a}
    if x:
        state[EXTRA_KEY] = x
    if linked:
        # Only for values the state holds (an empty value is no slot).
        kept = {slot: data for slot, data in linked.items() if slot in c}
        if kept:
            state[LINKED_KEY] = kept
    return state


def empty_state(entity_type: str, version: str | None = None) -> dict[str, Any]:
    """An indexed state with no content (the base a create is diffed against)."""
    if entity_type not in ENTITY_TYPES:
        raise InvalidSnapshot(f"unknown entity type {entity_type!r}")
    return {TYPE_KEY: entity_type, VERSION_KEY: version, CMP_KEY: {}, SRC_KEY: {}, TYPES_KEY: {}}


def slot_kind(slot: str) -> str:
    """The field kind governing a slot."""
    field, sep, _ = slot.partition("|")
    kind = FIELD_KINDS.get(field, SCALAR)
    # An unknown field whose name contains "|" is a single opaque slot; only known split
    # kinds are parsed.
    return kind if sep or kind in (SCALAR, DECIMAL, SET) else SCALAR


def parse_slot(slot: str) -> tuple[str, str | None, str | None, str | None]:
    """Split a slot into (field, attribute, locale, scope) as reported in a Change."""
    field, sep, rest = slot.partition("|")
    if not sep:
        return slot, None, None, None
    kind = FIELD_KINDS.get(field, SCALAR)
    if kind == VALUES:
        attribute, locale, scope = rest.rsplit("|", 2)
        return field, attribute, locale or None, scope or None
    if kind == LABELS:
        return field, None, rest, None
    if kind == SET_BY_SCOPE:
        return field, None, None, rest
    if kind in (KEYED, ASSOCIATIONS, QUANTIFIED, VARIANT_SETS):
        return field, rest, None, None
    return slot, None, None, None


def make_slot(field: str, attribute: str | None, locale: str | None, scope: str | None) -> str:
    """Inverse of parse_slot."""
    kind = FIELD_KINDS.get(field, SCALAR)
    if kind == VALUES:
        return f"values|{attribute}|{locale or ''}|{scope or ''}"
    if kind == LABELS:
        return f"{field}|{locale}"
    if kind == SET_BY_SCOPE:
        return f"{field}|{scope}"
    if kind in (KEYED, ASSOCIATIONS, QUANTIFIED, VARIANT_SETS):
        return f"{field}|{attribute}"
    return field


def is_set_slot(slot: str) -> bool:
    """True for order-insensitive code-list slots (reported with added/removed)."""
    field, _, rest = slot.partition("|")
    kind = FIELD_KINDS.get(field, SCALAR)
    if kind in (SET, SET_BY_SCOPE, ASSOCIATIONS):
        return True
    return kind == VARIANT_SETS and rest.endswith(".attributes")


def source_of(state: dict[str, Any], slot: str) -> Any:
    """The source JSON of a slot (None when absent)."""
    src = state[SRC_KEY]
    if slot in src:
        return src[slot]
    cmp = state[CMP_KEY].get(slot)
    return None if cmp is None else orjson.loads(cmp)


def put_source(state: dict[str, Any], slot: str, src: Any) -> None:
    """Set (or remove, when `src` is None/empty) one slot of a mutable state from source JSON.

    Used by apply: it goes through the same normalisation as index_state, so applying a
    change gives exactly the state a full snapshot would have given.
    """
    c: dict[str, str] = state[CMP_KEY]
    s: dict[str, Any] = state[SRC_KEY]
    c.pop(slot, None)
    s.pop(slot, None)
    linked = state.get(LINKED_KEY)
    if linked:
        linked.pop(slot, None)  # the labels of the option the value named before
    if src is None:
        return
    field, attribute, locale, scope = parse_slot(slot)
    kind = slot_kind(slot)
    entity_type: str = state[TYPE_KEY]
    if kind == VALUES and attribute is not None:
        if entity_type == "category":
            canon = normalise_value(src, None)
        else:
            canon = normalise_value(src, state[TYPES_KEY].get(attribute))
        if canon is not _ABSENT:
            _put(c, s, slot, canon, src)
        return
    if kind == VARIANT_SETS and attribute is not None:
        level, _, sub = attribute.rpartition(".")
        raw = {"level": int(level), sub: src}
        index_field(entity_type, field, [raw], c, s, {})
        return
    if kind in (ASSOCIATIONS, QUANTIFIED) and attribute is not None:
        assoc_type, _, target_kind = attribute.rpartition(".")
        index_field(entity_type, field, {assoc_type: {target_kind: src}}, c, s, {})
        return
    if kind in (LABELS, KEYED, SET_BY_SCOPE):
        key = locale if kind == LABELS else scope if kind == SET_BY_SCOPE else attribute
        index_field(entity_type, field, {key: src}, c, s, {})
        return
    index_field(entity_type, slot, src, c, s, {})


def is_tombstone(state: dict[str, Any] | None) -> bool:
    """True when a stored state is a deletion marker."""
    return state is not None and bool(state.get(DELETED_KEY))


def tombstone(entity_type: str, version: str | None) -> dict[str, Any]:
    """The small marker stored after a delete, keeping the version for staleness checks."""
    return {TYPE_KEY: entity_type, VERSION_KEY: version, DELETED_KEY: True}


# "values|<attribute>|<locale>|<scope>" -> (attribute, locale or None, scope or None); slot
# names repeat across a catalogue, so each is split once.
_VALUE_SLOT_PARTS: Final[dict[str, tuple[str, str | None, str | None]]] = {}


def _value_slot_parts(slot: str) -> tuple[str, str | None, str | None]:
    attribute, locale, scope = slot[7:].rsplit("|", 2)
    parts = (attribute, locale or None, scope or None)
    if len(_VALUE_SLOT_PARTS) >= _SLOT_CACHE_MAX:
        _VALUE_SLOT_PARTS.clear()  # a bound, not an LRU: a catalogue has far fewer slots
    _VALUE_SLOT_PARTS[slot] = parts
    return parts


def _category_value_key(attribute: str, locale: str | None, channel: str | None) -> str:
    return "|".join(p for p in (attribute, channel, locale) if p)


def denormalise(state: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the canonical Akeneo-shaped payload of an indexed state.

    Known fields of the entity type are always present (empty list/object or null when
    absent); code lists come out sorted; values keep their source text.
    """
    entity_type: str = state[TYPE_KEY]
    out: dict[str, Any] = {
        k: (v.copy() if isinstance(v, dict | list) else v)
        for k, v in _DEFAULTS.get(entity_type, {}).items()
    }
    types: dict[str, str] = state.get(TYPES_KEY, {})
    linked: dict[str, Any] = state.get(LINKED_KEY) or {}
    variant_sets: dict[int, dict[str, Any]] = {}
    cmp_map: dict[str, str] = state.get(CMP_KEY, {})
    src_map: dict[str, Any] = state.get(SRC_KEY, {})
    is_category = entity_type == "category"
    values: dict[str, Any] = out["values"] if isinstance(out.get("values"), dict) else {}
    slots = sorted(cmp_map)
    # Sources: the source kept in "s", else the comparison text parsed back; all the texts
    # are parsed in one call (one JSON array) rather than one call per slot.
    parsed = orjson.loads("[" + ",".join(map(cmp_map.__getitem__, slots)) + "]")
    # Only product-style value slots are in the parts cache (enriched category values are
    # keyed differently and take the general path below).
    no_parts: dict[str, tuple[str, str | None, str | None]] = {}
    parts_get = (no_parts if is_category else _VALUE_SLOT_PARTS).get
    types_get = types.get
    for slot, src in zip(slots, map(src_map.get, slots, parsed), strict=True):
        parts = parts_get(slot)
        if parts is None and not is_category and slot.startswith("values|"):
            parts = _value_slot_parts(slot)
        if parts is not None:
            # Hot path: most slots are product values.
            attr, loc, sc = parts
            attribute_type = types_get(attr)
            if attribute_type is None:
                item = {"locale": loc, "scope": sc, "data": src}
            else:
                item = {"locale": loc, "scope": sc, "data": src, "attribute_type": attribute_type}
            if linked and slot in linked:
                item["linked_data"] = linked[slot]
            items = values.get(attr)
            if items is None:
                values[attr] = [item]
                out["values"] = values
            else:
                items.append(item)
            continue
        field, attribute, locale, scope = parse_slot(slot)
        kind = slot_kind(slot)
        if kind == VALUES and attribute is not None:
            # Only enriched category values get here (product values took the hot path).
            out.setdefault("values", {})[_category_value_key(attribute, locale, scope)] = {
                "data": src,
                "type": types.get(attribute),
                "locale": locale,
                "channel": scope,
                "attribute_code": attribute,
            }
        elif kind == LABELS:
            out.setdefault(field, {})[locale] = src
        elif kind == SET_BY_SCOPE:
            out.setdefault(field, {})[scope] = src
        elif kind == KEYED:
            out.setdefault(field, {})[attribute] = src
        elif kind in (ASSOCIATIONS, QUANTIFIED) and attribute is not None:
            assoc_type, _, target_kind = attribute.rpartition(".")
            empty: dict[str, list[Any]] = (
                {"groups": [], "products": [], "product_models": []}
                if kind == ASSOCIATIONS
                else {"products": [], "product_models": []}
            )
            out.setdefault(field, {}).setdefault(assoc_type, empty)[target_kind] = src
        elif kind == VARIANT_SETS and attribute is not None:
            level, _, sub = attribute.rpartition(".")
            variant_sets.setdefault(
                int(level), {"level": int(level), "axes": [], "attributes": []}
            )[sub] = src
        else:
            out[field] = src
    if variant_sets:
        out["variant_attribute_sets"] = [variant_sets[k] for k in sorted(variant_sets)]
    for field, raw in (state.get(EXTRA_KEY) or {}).items():
        out[field] = raw
    if state.get(VERSION_KEY) is not None:
        out["updated"] = state[VERSION_KEY]
    return out


__all__ = [
    "EXTRA_FIELDS",
    "EXTRA_KEY",
    "FIELD_KINDS",
    "IGNORED_FIELDS",
    "LINKED_KEY",
    "TYPES_FIELD",
    "canonical_decimal",
    "denormalise",
    "dumps",
    "empty_state",
    "index_field",
    "index_state",
    "is_set_slot",
    "is_tombstone",
    "make_slot",
    "normalise_value",
    "parse_slot",
    "put_source",
    "slot_kind",
    "source_of",
    "tombstone",
]
