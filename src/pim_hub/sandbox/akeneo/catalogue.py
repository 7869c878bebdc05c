"""Seeded, lazily generated Akeneo catalogue with an overlay of edits."""

from __future__ import annotations

import hashlib
import random
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pim_hub.sandbox.akeneo import reference as ref

Json = dict[str, Any]
Values = dict[str, list[Json]]

# Products are laid out in groups of GROUP consecutive indexes; a group is either all simple
# products or ends with the variants of one product model, so product N's shape follows from
# seed + N alone and nothing has to be precomputed for 100,000 products.
GROUP = 10
_MASK64 = (1 << 64) - 1
_MASK48 = (1 << 48) - 1
# An odd multiplier is a bijection modulo 2**48: uuids look random but decode back to N.
_UUID_MUL = 0x9E3779B97F4B
_UUID_INV = pow(_UUID_MUL, -1, 1 << 48)
_BASE_TIME = datetime(2023, 1, 1, tzinfo=UTC)
_CREATED_SPAN = 540 * 86400
_UPDATED_SPAN = 60 * 86400
_ASSOCIATION_TYPES = ("PACK", "SUBSTITUTION", "UPSELL", "X_SELL")
_ADJECTIVES = (
    ("Classic", "Classique", "Klassisch"),
    ("Urban", "Urbain", "Urban"),
    ("Premium", "Premium", "Premium"),
    ("Essential", "Essentiel", "Basis"),
    ("Vintage", "Vintage", "Vintage"),
    ("Sport", "Sport", "Sport"),
)

_LOREM = (
    "Designed for everyday use, this product combines durable materials with a clean look. "
    "It is easy to care for, built to last and comes with a generous warranty. Ideal as a gift "
    "or for yourself; pairs well with the rest of the collection. Carefully packed and shipped "
    "from our European warehouse. Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed "
    "do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, "
    "quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat."
)
# Variants of one model are consecutive, so a small cache of generated models saves most of the
# work of a page of variants while keeping memory bounded.
_MODEL_CACHE_SIZE = 16
# Generated `updated` values of unedited products are kept in blocks of this many indexes.
_UPDATED_BLOCK = 4096

# Tags keep the hash streams of different properties independent.
_T_KIND, _T_FAMILY, _T_VALUES, _T_TIME, _T_UUID, _T_MODEL, _T_ENABLED = range(1, 8)


def _mix(*parts: int) -> int:
    """Deterministic 64-bit hash of integers (splitmix64 chained), stable across runs."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & _MASK64)) + 0x9E3779B97F4A7C15 & _MASK64
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 31
    return h


def _str_key(text: str) -> int:
    """Stable integer for a string (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def iso(ts: datetime) -> str:
    """Akeneo's timestamp format: ISO 8601 with a numeric offset, second precision."""
    return ts.astimezone(UTC).replace(microsecond=0).isoformat()


def _ean13(body: int) -> str:
    digits = f"{body % 10**12:012d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return digits + str((10 - total % 10) % 10)


class CatalogueError(ValueError):
    """An edit the real PIM would refuse (unknown attribute, entity or option)."""


@dataclass(frozen=True)
class Change:
    """One edit of the catalogue, with the full entity before and after it."""

    entity: Literal["product", "product_model"]
    action: Literal["created", "updated", "removed"]
    key: str  # product uuid or product model code
    identifier: str | None  # product sku; None for product models
    before: Json | None
    after: Json | None
    at: datetime
    author: str
    author_type: Literal["ui", "api"]


@dataclass(frozen=True)
class _Slot:
    """Where product N sits: its family and, for variants, its models and axis values."""

    family: str
    variant: str | None = None
    root: str | None = None
    sub: str | None = None
    axes: tuple[tuple[str, str], ...] = ()

    @property
    def parent(self) -> str | None:
        return self.sub or self.root


@dataclass(frozen=True)
class _ModelSlot:
    family: str
    variant: str
    parent: str | None
    group: int
    axes: tuple[tuple[str, str], ...] = ()


class Catalogue:
    """A deterministic catalogue: product N is computed from (seed, N); edits live in overlays.

    Memory stays flat at any size: only edited, created and deleted entities are stored.
    Reads are safe from other threads (overlay entries are replaced, never mutated in place).
    """

    def __init__(
        self,
        products: int = 1000,
        seed: int = 42,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not 0 <= products <= 1_000_000:
            raise ValueError("products must be between 0 and 1,000,000")
        self.seed = seed
        self.base_count = products
        self._clock = clock or (lambda: datetime.now(UTC))
        self._next = products
        self._deleted: set[int] = set()
        self._created: dict[int, Json] = {}
        self._product_patch: dict[int, Json] = {}
        self._model_patch: dict[str, Json] = {}
        self._lock = threading.Lock()
        self._uuid_tag = _mix(seed, _T_UUID) & 0xFFF
        self._uuid_key = _mix(seed, _T_UUID, -1) & _MASK48
        self._model_cache: OrderedDict[str, Json] = OrderedDict()
        self._updated_blocks: dict[int, list[datetime]] = {}
        self._patched_groups: set[int] = set()  # groups whose product models were edited
        self._build_reference()

    # ---------------------------------------------------------------- reference data
    def _build_reference(self) -> None:
        self.locales: list[Json] = [{"code": c, "enabled": True} for c in ref.LOCALES] + [
            {"code": c, "enabled": False} for c in ("es_ES", "it_IT", "nl_NL", "pt_PT", "pl_PL")
        ]
        self.channels: list[Json] = [
            {
                "code": code,
                "currencies": spec["currencies"],
                "locales": spec["locales"],
                "category_tree": "master",
                "conversion_units": {},
                "labels": ref.labels(code),
            }
            for code, spec in ref.CHANNELS.items()
        ]
        self.attributes: list[Json] = [
            self._attribute_json(a, i) for i, a in enumerate(ref.ATTRIBUTES, 1)
        ]
        self.attribute_options: dict[str, list[Json]] = {
            a.code: [
                {"code": o, "attribute": a.code, "sort_order": i, "labels": ref.labels(o)}
                for i, o in enumerate(a.options, 1)
            ]
            for a in ref.ATTRIBUTES
            if a.options
        }
        self.families: list[Json] = [
            {
                "code": f.code,
                "attribute_as_label": "name",
                "attribute_as_image": "image",
                "attributes": list(f.attributes),
                "attribute_requirements": {
                    "ecommerce": ["sku", "name", "description", "price", "image"],
                    "mobile": ["sku", "name", "price"],
                },
                "labels": ref.labels(f.code),
            }
            for f in ref.FAMILIES
        ]
        self.family_variants: dict[str, list[Json]] = {
            f.code: [self._variant_json(f, v) for v in f.variants] for f in ref.FAMILIES
        }
        self.categories: list[Json] = []
        position: dict[str, int] = {}
        order = ["master"]
        parents: dict[str, str | None] = {"master": None}
        for parent, children in ref.CATEGORY_TREE.items():
            for i, child in enumerate(children, 1):
                parents[child] = parent
                position[child] = i
                order.append(child)
        for code in order:
            stamp = _BASE_TIME + timedelta(seconds=_mix(self.seed, _str_key(code)) % 86400 * 30)
            self.categories.append(
                {
                    "code": code,
                    "parent": parents[code],
                    "updated": iso(stamp),
                    "position": position.get(code, 1),
                    "labels": ref.labels(code),
                }
            )
        self.media_attributes = frozenset(a.code for a in ref.ATTRIBUTES if a.type == ref.IMAGE)

    @staticmethod
    def _attribute_json(a: ref.AttributeDef, sort_order: int) -> Json:
        numeric = a.type in (ref.NUMBER, ref.METRIC, ref.PRICE)
        return {
            "code": a.code,
            "type": a.type,
            "group": a.group,
            "group_labels": ref.labels(a.group),
            "labels": ref.labels(a.code),
            "sort_order": sort_order,
            "localizable": a.localizable,
            "scopable": a.scopable,
            "available_locales": [],
            "unique": a.unique,
            "useable_as_grid_filter": a.type != ref.TEXTAREA,
            "max_characters": 255 if a.type in (ref.TEXT, ref.IDENTIFIER) else None,
            "validation_rule": None,
            "validation_regexp": None,
            "wysiwyg_enabled": True if a.type == ref.TEXTAREA else None,
            "number_min": None,
            "number_max": None,
            "decimals_allowed": a.decimals if numeric else None,
            "negative_allowed": False if a.type in (ref.NUMBER, ref.METRIC) else None,
            "metric_family": a.metric[0] if a.metric else None,
            "default_metric_unit": a.metric[1] if a.metric else None,
            "date_min": None,
            "date_max": None,
            "allowed_extensions": ["png", "jpg", "jpeg"] if a.type == ref.IMAGE else [],
            "max_file_size": None,
            "reference_data_name": None,
            "default_value": None,
            "is_main_identifier": a.type == ref.IDENTIFIER,
            "is_mandatory": a.type == ref.IDENTIFIER,
        }

    @staticmethod
    def _variant_json(f: ref.FamilyDef, v: ref.VariantDef) -> Json:
        variant_attrs = set(v.level1_attributes) | set(v.level2_attributes)
        sets = [{"level": 1, "axes": list(v.level1_axes), "attributes": list(v.level1_attributes)}]
        if v.level2_axes:
            sets.append(
                {"level": 2, "axes": list(v.level2_axes), "attributes": list(v.level2_attributes)}
            )
        return {
            "code": v.code,
            "labels": ref.labels(v.code),
            "common_attributes": [a for a in f.attributes if a not in variant_attrs],
            "variant_attribute_sets": sets,
        }

    # ---------------------------------------------------------------- layout
    def _group_kind(self, g: int) -> int:
        """0 = simple products only, 1 = one-level variant model, 2 = two-level model."""
        if (g + 1) * GROUP > self.base_count:
            return 0  # a partial trailing group holds only simple products
        h = _mix(self.seed, _T_KIND, g) % 10
        return 0 if h < 5 else 1 if h < 8 else 2

    def _one_level_variant(self, g: int) -> tuple[ref.FamilyDef, ref.VariantDef]:
        code = ("shoes_size", "furniture_color", "clothing_size")[_mix(self.seed, _T_MODEL, g) % 3]
        return ref.VARIANT_BY_CODE[code]

    def _axis_values(self, options: tuple[str, ...], g: int, count: int) -> list[str]:
        start = _mix(self.seed, _T_MODEL, g, 1) % len(options)
        return [options[(start + i) % len(options)] for i in range(count)]

    def _group_models(self, g: int) -> list[tuple[str, _ModelSlot]]:
        kind = self._group_kind(g)
        if kind == 0:
            return []
        root = f"model_{g}"
        if kind == 1:
            fam, var = self._one_level_variant(g)
            return [(root, _ModelSlot(fam.code, var.code, None, g))]
        colors = self._axis_values(ref.ATTRIBUTE_BY_CODE["color"].options, g, 2)
        models = [(root, _ModelSlot("clothing", "clothing_color_size", None, g))]
        models += [
            (f"{root}_{c}", _ModelSlot("clothing", "clothing_color_size", root, g, (("color", c),)))
            for c in colors
        ]
        return models

    def _slot(self, n: int) -> _Slot:
        g, pos = divmod(n, GROUP)
        kind = self._group_kind(g) if n < self.base_count else 0
        if kind == 1 and pos >= 6:
            fam, var = self._one_level_variant(g)
            axis = var.level1_axes[0]
            value = self._axis_values(ref.ATTRIBUTE_BY_CODE[axis].options, g, 4)[pos - 6]
            return _Slot(fam.code, var.code, f"model_{g}", None, ((axis, value),))
        if kind == 2 and pos >= 4:
            colors = self._axis_values(ref.ATTRIBUTE_BY_CODE["color"].options, g, 2)
            color = colors[(pos - 4) // 3]
            size = ("s", "m", "l")[(pos - 4) % 3]
            return _Slot(
                "clothing",
                "clothing_color_size",
                f"model_{g}",
                f"model_{g}_{color}",
                (("size", size),),
            )
        fam = ref.FAMILIES[_mix(self.seed, _T_FAMILY, n) % len(ref.FAMILIES)]
        return _Slot(fam.code)

    def _model_slot(self, code: str) -> _ModelSlot | None:
        parts = code.split("_")
        if len(parts) not in (2, 3) or parts[0] != "model" or not parts[1].isdigit():
            return None
        for model_code, slot in self._group_models(int(parts[1])):
            if model_code == code:
                return slot
        return None

    # ---------------------------------------------------------------- identifiers
    def product_uuid(self, n: int) -> str:
        """The uuid of product index N (bijective, so no lookup table is needed)."""
        hi = (_mix(self.seed, _T_UUID, n) & 0xFFFFFFFFFFFF0FFF) | 0x4000
        tag = self._uuid_tag ^ (hi & 0xFFF)
        lo = (0x8 << 60) | (tag << 48) | (((n * _UUID_MUL) ^ self._uuid_key) & _MASK48)
        return str(uuid.UUID(int=(hi << 64) | lo))

    def decode_uuid(self, product_uuid: str) -> int | None:
        """Index encoded in a uuid this catalogue issued (deleted products included)."""
        try:
            value = uuid.UUID(product_uuid).int
        except ValueError:
            return None
        hi, lo = value >> 64, value & _MASK64
        if lo >> 60 != 0x8 or ((lo >> 48) & 0xFFF) ^ (hi & 0xFFF) != self._uuid_tag:
            return None
        n = (((lo & _MASK48) ^ self._uuid_key) * _UUID_INV) & _MASK48
        if n >= self._next or self.product_uuid(n) != str(uuid.UUID(int=value)):
            return None
        return n

    def product_index(self, product_uuid: str) -> int | None:
        """Index of a live product from its uuid, or None if unknown or deleted."""
        n = self.decode_uuid(product_uuid)
        return None if n is None or n in self._deleted else n

    def media_code(self, owner: str) -> str:
        """Media file code in Akeneo's `a/b/c/d/<sha1>_<filename>` shape for an owner key."""
        digest = hashlib.sha1(f"{self.seed}:{owner}".encode(), usedforsecurity=False).hexdigest()
        return f"{digest[0]}/{digest[1]}/{digest[2]}/{digest[3]}/{digest}_{owner}.png"

    def media_owner(self, code: str) -> str | None:
        """The owner of a media code this catalogue generated, else None."""
        name = code.rsplit("/", 1)[-1]
        if "_" not in name or not name.endswith(".png"):
            return None
        owner = name.split("_", 1)[1][: -len(".png")]
        return owner if self.media_code(owner) == code else None

    # ---------------------------------------------------------------- generation
    def _gen_values(
        self, rng: random.Random, attrs: Iterable[str], n: int, owner: str, family: str
    ) -> Values:
        nouns = ref.FAMILY_BY_CODE[family].nouns
        values: Values = {}
        for code in attrs:
            a = ref.ATTRIBUTE_BY_CODE[code]
            # Real catalogues are incomplete: leave some optional values out.
            if code not in ("sku", "name", "price", "description") and rng.random() < 0.12:
                continue
            entries: list[Json] = []
            if a.scopable:
                for channel, spec in ref.CHANNELS.items():
                    for loc in spec["locales"] if a.localizable else (None,):
                        entries.append(
                            {
                                "locale": loc,
                                "scope": channel,
                                "data": self._datum(a, rng, n, owner, nouns, loc, channel),
                            }
                        )
            else:
                for loc in ref.LOCALES if a.localizable else (None,):
                    entries.append(
                        {
                            "locale": loc,
                            "scope": None,
                            "data": self._datum(a, rng, n, owner, nouns, loc, None),
                        }
                    )
            values[code] = entries
        return values

    def _datum(
        self,
        a: ref.AttributeDef,
        rng: random.Random,
        n: int,
        owner: str,
        nouns: tuple[str, str, str],
        locale: str | None,
        scope: str | None,
    ) -> Any:
        # int(rng.random() * k) instead of randrange: same spread, a third of the cost, and
        # this runs ~50 times per product.
        t = a.type
        li = ref.LOCALES.index(locale) if locale else 0
        if t == ref.IDENTIFIER:
            return f"SKU-{n:07d}"
        if t == ref.TEXT:
            if a.code == "ean":
                return _ean13(200_000_000_000 + n)
            if a.code == "isbn":
                return _ean13(978_000_000_000 + n)
            if a.code == "name":
                adjective = _ADJECTIVES[_str_key(owner) % len(_ADJECTIVES)][li]
                return f"{adjective} {nouns[li]} {owner}"
            if a.code == "url_key":
                return f"{owner.lower()}-{locale[:2] if locale else 'x'}"
            return f"{a.code.replace('_', ' ').title()} {1000 + int(rng.random() * 9000)}"
        if t == ref.TEXTAREA:
            # A slice of a fixed text: realistic length variety at one random draw.
            start = int(rng.random() * (len(_LOREM) - 300))
            length = 40 + int(rng.random() * (260 if scope != "mobile" else 40))
            return f"<p>{owner}: {_LOREM[start : start + length]}</p>"
        if t == ref.NUMBER:
            return f"{rng.uniform(1, 5):.4f}" if a.decimals else 1 + int(rng.random() * 499)
        if t == ref.BOOLEAN:
            return rng.random() < 0.5
        if t == ref.DATE:
            day = _BASE_TIME + timedelta(days=int(rng.random() * 900))
            return iso(day)
        if t == ref.SIMPLE:
            return a.options[int(rng.random() * len(a.options))]
        if t == ref.MULTI:
            return sorted(rng.sample(a.options, 1 + int(rng.random() * 3)))
        if t == ref.PRICE:
            eur = (499 + int(rng.random() * 49500)) / 100
            return [
                {"amount": f"{eur:.2f}", "currency": "EUR"},
                {"amount": f"{eur * 1.08:.2f}", "currency": "USD"},
            ]
        if t == ref.METRIC:
            assert a.metric is not None
            return {"amount": f"{rng.uniform(0.1, 120):.4f}", "unit": a.metric[1]}
        if t == ref.IMAGE:
            return self.media_code(f"{owner}-{a.code}")
        raise AssertionError(f"unhandled attribute type {t}")

    def _stamps(self, key: int, tag: int) -> tuple[datetime, datetime]:
        h = _mix(self.seed, _T_TIME, tag, key)
        created = _BASE_TIME + timedelta(seconds=h % _CREATED_SPAN)
        return created, created + timedelta(seconds=(h >> 32) % _UPDATED_SPAN)

    def _own_product(self, n: int) -> Json:
        """Product N as generated (own-level values only; inherited values added later)."""
        if n >= self.base_count:
            return self._created[n]
        slot = self._slot(n)
        fam = ref.FAMILY_BY_CODE[slot.family]
        rng = random.Random(_mix(self.seed, _T_VALUES, n))
        if slot.variant is None:
            attrs: Iterable[str] = fam.attributes
            categories = self._pick_categories(fam, rng)
        else:
            _, var = ref.VARIANT_BY_CODE[slot.variant]
            attrs = [
                a
                for a in var.level2_attributes or var.level1_attributes
                if a not in dict(slot.axes)
            ]
            categories = []
        values = self._gen_values(rng, attrs, n, f"P{n:07d}", slot.family)
        for axis, option in slot.axes:
            values[axis] = [{"locale": None, "scope": None, "data": option}]
        created, updated = self._stamps(n, 0)
        return {
            "uuid": self.product_uuid(n),
            "enabled": _mix(self.seed, _T_ENABLED, n) % 100 >= 8,
            "family": slot.family,
            "categories": categories,
            "groups": [],
            "parent": slot.parent,
            "values": values,
            "created": iso(created),
            "updated": iso(updated),
            "associations": {
                t: {"groups": [], "products": [], "product_models": []} for t in _ASSOCIATION_TYPES
            },
            "quantified_associations": {},
            "metadata": {"workflow_status": "working_copy"},
        }

    @staticmethod
    def _pick_categories(fam: ref.FamilyDef, rng: random.Random) -> list[str]:
        picked = {fam.categories[rng.randrange(len(fam.categories))]}
        if rng.random() < 0.3:
            picked.add("new_arrivals")
        return sorted(picked)

    def _own_model(self, code: str, slot: _ModelSlot) -> Json:
        cached = self._model_cache.get(code)
        if cached is not None:
            self._model_cache.move_to_end(code)
            return cached
        model = self._generate_model(code, slot)
        self._model_cache[code] = model
        if len(self._model_cache) > _MODEL_CACHE_SIZE:
            self._model_cache.popitem(last=False)
        return model

    def _generate_model(self, code: str, slot: _ModelSlot) -> Json:
        fam, var = ref.VARIANT_BY_CODE[slot.variant]
        rng = random.Random(_mix(self.seed, _T_MODEL, _str_key(code)))
        level1 = set(var.level1_attributes) | set(var.level2_attributes)
        if slot.parent is None:
            attrs: Iterable[str] = [a for a in fam.attributes if a not in level1]
            categories = self._pick_categories(fam, rng)
        else:
            attrs = [a for a in var.level1_attributes if a not in dict(slot.axes)]
            categories = []
        values = self._gen_values(rng, attrs, slot.group * GROUP, code, fam.code)
        for axis, option in slot.axes:
            values[axis] = [{"locale": None, "scope": None, "data": option}]
        created, updated = self._stamps(_str_key(code), 1)
        return {
            "code": code,
            "family": fam.code,
            "family_variant": var.code,
            "parent": slot.parent,
            "categories": categories,
            "values": values,
            "created": iso(created),
            "updated": iso(updated),
            "associations": {
                t: {"groups": [], "products": [], "product_models": []} for t in _ASSOCIATION_TYPES
            },
            "quantified_associations": {},
            "metadata": {"workflow_status": "working_copy"},
        }

    @staticmethod
    def _apply_patch(entity: Json, patch: Json | None) -> Json:
        if not patch:
            return entity
        out = dict(entity)
        for key, val in patch.items():
            if key == "values":
                out["values"] = merge_values(out["values"], val)
            else:
                out[key] = val
        return out

    @staticmethod
    def _inherit(own: Json, parent: Json | None) -> Json:
        """Akeneo returns variants with their ancestors' values and categories merged in."""
        if parent is None:
            return own
        out = dict(own)
        out["values"] = {**parent["values"], **own["values"]}
        out["categories"] = sorted(set(parent["categories"]) | set(own["categories"]))
        return out

    # ---------------------------------------------------------------- reads
    def product_at(self, n: int) -> Json | None:
        """Product index N as the REST API shows it, or None if it does not exist."""
        if n < 0 or n >= self._next or n in self._deleted:
            return None
        own = self._apply_patch(self._own_product(n), self._product_patch.get(n))
        parent = self.get_product_model(own["parent"]) if own["parent"] else None
        return self._inherit(own, parent)

    def get_product(self, product_uuid: str) -> Json | None:
        """A product by uuid, or None."""
        n = self.product_index(product_uuid)
        return None if n is None else self.product_at(n)

    def get_product_model(self, code: str) -> Json | None:
        """A product model by code (with inherited values), or None."""
        slot = self._model_slot(code)
        if slot is None:
            return None
        own = self._apply_patch(self._own_model(code, slot), self._model_patch.get(code))
        parent = self.get_product_model(slot.parent) if slot.parent else None
        return self._inherit(own, parent)

    def pristine(self, n: int) -> bool:
        """Whether product N is still exactly as generated (no edit of it or of its models)."""
        return (
            0 <= n < self.base_count
            and n not in self._product_patch
            and n not in self._deleted
            and n // GROUP not in self._patched_groups
        )

    @property
    def product_count(self) -> int:
        """Number of live products."""
        return self._next - len(self._deleted)

    @property
    def next_index(self) -> int:
        """One past the highest product index ever used."""
        return self._next

    def iter_product_indexes(self, start: int = 0) -> Iterator[int]:
        """Live product indexes from `start`, ascending (the search_after order)."""
        for n in range(max(start, 0), self._next):
            if n not in self._deleted:
                yield n

    def iter_products(self) -> Iterator[Json]:
        """Every live product, generated one at a time."""
        for n in self.iter_product_indexes():
            product = self.product_at(n)
            if product is not None:
                yield product

    def product_updated(self, n: int) -> datetime:
        """`updated` of product N, without generating its values."""
        patch = self._product_patch.get(n)
        if patch and "updated" in patch:
            return datetime.fromisoformat(patch["updated"])
        if n >= self.base_count:
            return datetime.fromisoformat(self._created[n]["updated"])
        return self._stamps(n, 0)[1]

    def model_updated(self, code: str) -> datetime:
        """`updated` of a product model, without generating its values."""
        patch = self._model_patch.get(code)
        if patch and "updated" in patch:
            return datetime.fromisoformat(patch["updated"])
        return self._stamps(_str_key(code), 1)[1]

    def effective_updated(self, n: int) -> datetime:
        """Latest `updated` of product N and its ancestors (Akeneo's updated filter uses it)."""
        if n < self.base_count and not self._model_patch and n not in self._product_patch:
            # Unedited: the generated value, computed once per block of indexes (ranges of
            # `updated` are read in parallel, so every range tests every index).
            block = self._updated_blocks.get(n // _UPDATED_BLOCK)
            if block is None:
                block = self._updated_block(n // _UPDATED_BLOCK)
            return block[n % _UPDATED_BLOCK]
        return self._effective_updated(n)

    def _updated_block(self, b: int) -> list[datetime]:
        start = b * _UPDATED_BLOCK
        block = [
            self._effective_updated(n)
            for n in range(start, min(start + _UPDATED_BLOCK, self.base_count))
        ]
        self._updated_blocks[b] = block  # replaced whole: safe for readers in other threads
        return block

    def _effective_updated(self, n: int) -> datetime:
        stamp = self.product_updated(n)
        parent = self._created[n]["parent"] if n >= self.base_count else self._slot(n).parent
        while parent:
            stamp = max(stamp, self.model_updated(parent))
            slot = self._model_slot(parent)
            parent = slot.parent if slot else None
        return stamp

    def iter_model_codes(self, after: str | None = None) -> Iterator[str]:
        """Product model codes in listing order, starting after `after`."""
        g = 0
        skip_until = None
        if after is not None:
            parts = after.split("_")
            if len(parts) >= 2 and parts[1].isdigit():
                g, skip_until = int(parts[1]), after
        for group in range(g, self.base_count // GROUP):
            for code, _ in self._group_models(group):
                if skip_until is not None:
                    if code == skip_until:
                        skip_until = None
                    continue
                yield code
            skip_until = None

    # ---------------------------------------------------------------- edits
    def _tick(self, previous: str) -> datetime:
        """Next `updated`: now, but strictly after the previous value so deltas see the edit."""
        now = self._clock().astimezone(UTC).replace(microsecond=0)
        prev = datetime.fromisoformat(previous)
        return now if now > prev else prev + timedelta(seconds=1)

    def _check_values(self, family: str, values: Values) -> None:
        allowed = set(ref.FAMILY_BY_CODE[family].attributes)
        for code, entries in values.items():
            a = ref.ATTRIBUTE_BY_CODE.get(code)
            if a is None or code not in allowed:
                raise CatalogueError(f'Attribute "{code}" is not part of family "{family}".')
            for e in entries:
                if (e.get("locale") is not None) != a.localizable or (
                    e.get("scope") is not None
                ) != a.scopable:
                    raise CatalogueError(f'Wrong locale or scope for attribute "{code}".')
                data = e.get("data")
                if a.type == ref.SIMPLE and data is not None and data not in a.options:
                    raise CatalogueError(f'Option "{data}" does not exist for "{code}".')

    def update_product(
        self,
        product_uuid: str,
        *,
        values: Values | None = None,
        enabled: bool | None = None,
        categories: list[str] | None = None,
        author: str = "julia",
        author_type: Literal["ui", "api"] = "ui",
    ) -> Change:
        """Patch a product the way `PATCH /products-uuid/{uuid}` does; bumps `updated`."""
        with self._lock:
            n = self.product_index(product_uuid)
            before = None if n is None else self.product_at(n)
            if n is None or before is None:
                raise CatalogueError(f'Product "{product_uuid}" does not exist.')
            if values:
                self._check_values(before["family"], values)
            patch = dict(self._product_patch.get(n, {}))
            if values:
                patch["values"] = merge_values(patch.get("values", {}), values)
            if enabled is not None:
                patch["enabled"] = enabled
            if categories is not None:
                patch["categories"] = list(categories)
            at = self._tick(before["updated"])
            patch["updated"] = iso(at)
            self._product_patch[n] = patch
            after = self.product_at(n)
        return Change(
            "product", "updated", product_uuid, _sku(after), before, after, at, author, author_type
        )

    def set_enabled(self, product_uuid: str, enabled: bool, **author: Any) -> Change:
        """Enable or disable a product."""
        return self.update_product(product_uuid, enabled=enabled, **author)

    def delete_product(
        self, product_uuid: str, *, author: str = "julia", author_type: Literal["ui", "api"] = "ui"
    ) -> Change:
        """Delete a product; its uuid then answers 404."""
        with self._lock:
            n = self.product_index(product_uuid)
            before = None if n is None else self.product_at(n)
            if n is None or before is None:
                raise CatalogueError(f'Product "{product_uuid}" does not exist.')
            self._deleted.add(n)
            self._product_patch.pop(n, None)
            at = self._clock().astimezone(UTC).replace(microsecond=0)
        return Change(
            "product", "removed", product_uuid, _sku(before), before, None, at, author, author_type
        )

    def create_product(
        self,
        *,
        family: str = "accessories",
        values: Values | None = None,
        categories: list[str] | None = None,
        enabled: bool = True,
        identifier: str | None = None,
        author: str = "julia",
        author_type: Literal["ui", "api"] = "ui",
    ) -> Change:
        """Create a simple product (appended after the generated ones); returns its Change."""
        if family not in ref.FAMILY_BY_CODE:
            raise CatalogueError(f'Family "{family}" does not exist.')
        with self._lock:
            n = self._next
            at = self._clock().astimezone(UTC).replace(microsecond=0)
            own: Values = {
                "sku": [{"locale": None, "scope": None, "data": identifier or f"SKU-{n:07d}"}]
            }
            if values:
                self._check_values(family, values)
                own = merge_values(own, values)
            self._created[n] = {
                "uuid": self.product_uuid(n),
                "enabled": enabled,
                "family": family,
                "categories": sorted(categories or []),
                "groups": [],
                "parent": None,
                "values": own,
                "created": iso(at),
                "updated": iso(at),
                "associations": {
                    t: {"groups": [], "products": [], "product_models": []}
                    for t in _ASSOCIATION_TYPES
                },
                "quantified_associations": {},
                "metadata": {"workflow_status": "working_copy"},
            }
            self._next = n + 1
            after = self.product_at(n)
        assert after is not None
        return Change(
            "product", "created", after["uuid"], _sku(after), None, after, at, author, author_type
        )

    def update_product_model(
        self,
        code: str,
        *,
        values: Values,
        author: str = "julia",
        author_type: Literal["ui", "api"] = "ui",
    ) -> Change:
        """Patch a product model's values; its variants inherit the change."""
        with self._lock:
            before = self.get_product_model(code)
            if before is None:
                raise CatalogueError(f'Product model "{code}" does not exist.')
            self._check_values(before["family"], values)
            patch = dict(self._model_patch.get(code, {}))
            patch["values"] = merge_values(patch.get("values", {}), values)
            at = self._tick(before["updated"])
            patch["updated"] = iso(at)
            self._model_patch[code] = patch
            self._patched_groups.add(int(code.split("_")[1]))
            after = self.get_product_model(code)
        return Change(
            "product_model", "updated", code, None, before, after, at, author, author_type
        )

    def random_edit(self, rng: random.Random) -> Change:
        """One plausible edit (value change mostly; sometimes toggle, create, delete)."""
        roll = rng.random()
        if roll < 0.05 or self.product_count == 0:
            return self.create_product(family=ref.FAMILIES[rng.randrange(len(ref.FAMILIES))].code)
        n = None
        while n is None:
            candidate = rng.randrange(self._next)
            n = candidate if candidate not in self._deleted else None
        product_uuid = self.product_uuid(n)
        if roll < 0.08:
            return self.delete_product(product_uuid)
        if roll < 0.18:
            product = self.product_at(n)
            assert product is not None
            return self.set_enabled(product_uuid, not product["enabled"])
        product = self.product_at(n)
        assert product is not None
        if product["parent"] and roll < 0.3:
            root = (
                product["parent"].rsplit("_", 1)[0]
                if product["parent"].count("_") == 2
                else product["parent"]
            )
            locale = ref.LOCALES[rng.randrange(3)]
            return self.update_product_model(
                root,
                values={
                    "description": [
                        {
                            "locale": locale,
                            "scope": "ecommerce",
                            "data": f"<p>Edited {rng.randrange(10**6)}</p>",
                        }
                    ]
                },
            )
        eur = rng.randrange(499, 49999) / 100
        choice = rng.randrange(3)
        new: Values
        if choice == 0 or product["parent"]:
            new = {
                "price": [
                    {
                        "locale": None,
                        "scope": None,
                        "data": [
                            {"amount": f"{eur:.2f}", "currency": "EUR"},
                            {"amount": f"{eur * 1.08:.2f}", "currency": "USD"},
                        ],
                    }
                ]
            }
        elif choice == 1:
            locale = ref.LOCALES[rng.randrange(3)]
            new = {
                "name": [
                    {"locale": locale, "scope": None, "data": f"Renamed {rng.randrange(10**6)}"}
                ]
            }
        else:
            new = {"is_new": [{"locale": None, "scope": None, "data": rng.random() < 0.5}]}
        return self.update_product(product_uuid, values=new)


def merge_values(base: Values, patch: Values) -> Values:
    """Akeneo PATCH semantics for values: replace by (attribute, locale, scope); null erases."""
    out = dict(base)
    for code, entries in patch.items():
        current = list(out.get(code, []))
        for e in entries:
            key = (e.get("locale"), e.get("scope"))
            current = [c for c in current if (c.get("locale"), c.get("scope")) != key]
            if e.get("data") is not None:
                current.append({"locale": key[0], "scope": key[1], "data": e["data"]})
        if current:
            out[code] = current
        else:
            out.pop(code, None)
    return out


def _sku(product: Json | None) -> str | None:
    if product is None:
        return None
    entries = product["values"].get("sku") or [{}]
    sku = entries[0].get("data")
    return sku if isinstance(sku, str) else None
