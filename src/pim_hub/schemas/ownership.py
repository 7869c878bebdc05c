"""Field ownership by source, and the patches producers send (shared by the patch service
and the mutator).

A **source** is a system that says something about entities: `akeneo` (the default: every
snapshot the hub ingests itself, and full snapshots published without a source) and the
ones configured in HUB_SOURCES, e.g. `{"erp": {"owns": ["values.stock", "values.price"]}}`.
Each field belongs to exactly one source: the first source whose pattern matches the
field's name (`values.<attribute>` for a value in every locale and channel, the field name
for a top-level field such as `enabled`; shell-style `*` allowed), otherwise the default.

A **patch** carries only what its source owns: `{"values": {"stock": [{"locale": null,
"scope": null, "data": 17}]}}`; a value with `data: null` removes it. Mode `patch` changes what
it carries; mode `replace` (a full snapshot of the source) also removes the source's fields
it does not carry. Patches travel to the mutator inside a Snapshot's `delta` under the key
`hub_patch`, keyed by the entity key, so they meet the entity's stored state on its
partition.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pim_hub.schemas.errors import PermanentError

DEFAULT_SOURCE: Final = "akeneo"
#: The key of a patch inside a Snapshot's delta JSON.
PATCH_KEY: Final = "hub_patch"
#: Top-level fields a patch may carry besides `values` (one value each, compared whole).
PATCHABLE_FIELDS: Final = frozenset({"enabled", "family", "parent", "categories", "groups"})

PatchMode = Literal["patch", "replace"]


class PatchRefused(PermanentError):
    """A patch that cannot be applied; `code` names the reason for the invalid topic."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Ownership:
    """Which source owns which field: (pattern, source) pairs, first match wins."""

    rules: tuple[tuple[str, str], ...] = ()
    default: str = DEFAULT_SOURCE

    @classmethod
    def from_sources(
        cls, sources: Mapping[str, Iterable[str]], default: str = DEFAULT_SOURCE
    ) -> Ownership:
        """From {source: [patterns]} (HUB_SOURCES)."""
        rules = tuple((p, name) for name, patterns in sources.items() for p in patterns)
        return cls(rules, default)

    @property
    def active(self) -> bool:
        """True when some source besides the default owns something."""
        return bool(self.rules)

    @property
    def sources(self) -> frozenset[str]:
        """Every known source name."""
        return frozenset({self.default, *(s for _, s in self.rules)})

    def owner(self, name: str) -> str:
        """The source owning a field name (`values.stock`, `enabled`)."""
        for pattern, source in self.rules:
            if fnmatch.fnmatchcase(name, pattern):
                return source
        return self.default

    def owned_by_others(self, name: str, source: str) -> str | None:
        """The other source owning a field, or None when `source` owns it."""
        owner = self.owner(name)
        return None if owner == source else owner


@dataclass(frozen=True)
class ValueEntry:
    """One value a patch sets (data) or removes (data None)."""

    attribute: str
    locale: str | None
    scope: str | None
    data: Any


@dataclass(frozen=True)
class PatchBody:
    """What a patch carries: values and top-level fields."""

    values: tuple[ValueEntry, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The field names the patch touches (for ownership)."""
        return [f"values.{v.attribute}" for v in self.values] + list(self.fields)


def parse_patch_body(payload: Any) -> PatchBody:
    """Validate the shape of a patch payload (beyond its JSON Schema, for Avro producers)."""
    if not isinstance(payload, dict):
        raise PatchRefused("a patch payload must be a JSON object", "bad_patch")
    values: list[ValueEntry] = []
    fields: dict[str, Any] = {}
    for name, raw in payload.items():
        if name == "values":
            if not isinstance(raw, dict):
                raise PatchRefused("'values' must be an object of attribute lists", "bad_patch")
            for attribute, entries in raw.items():
                if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                    raise PatchRefused(
                        f"values.{attribute} must be a list of {{locale, scope, data}}",
                        "bad_patch",
                    )
                for entry in entries:
                    if "data" not in entry:
                        raise PatchRefused(
                            f"values.{attribute}: every entry needs data (null removes it)",
                            "bad_patch",
                        )
                    values.append(
                        ValueEntry(
                            attribute, entry.get("locale"), entry.get("scope"), entry["data"]
                        )
                    )
        elif name in PATCHABLE_FIELDS:
            fields[name] = raw
        else:
            raise PatchRefused(
                f"a patch cannot carry {name!r} (patchable: values, "
                f"{', '.join(sorted(PATCHABLE_FIELDS))})",
                "bad_patch",
            )
    if not values and not fields:
        raise PatchRefused("the patch carries nothing", "bad_patch")
    return PatchBody(tuple(values), fields)


def check_ownership(ownership: Ownership, source: str, body: PatchBody) -> None:
    """Refuse a patch from an unknown source or one touching another source's field."""
    if source not in ownership.sources or source == ownership.default:
        known = ", ".join(sorted(ownership.sources - {ownership.default})) or "none configured"
        raise PatchRefused(
            f"unknown patch source {source!r} (configured in HUB_SOURCES: {known})",
            "unknown_source",
        )
    foreign = {
        name: owner
        for name in body.names()
        if (owner := ownership.owned_by_others(name, source)) is not None
    }
    if foreign:
        what = ", ".join(f"{n} (owned by {o})" for n, o in sorted(foreign.items()))
        raise PatchRefused(f"source {source} may not change {what}", "not_owner")


def patch_delta(
    source: str, mode: PatchMode, identifier: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """The delta JSON of a Snapshot that carries a patch to the mutator."""
    return {
        PATCH_KEY: {"source": source, "mode": mode, "identifier": identifier, "payload": payload}
    }


def patch_of(delta: Any) -> dict[str, Any] | None:
    """The patch inside a Snapshot delta, or None for an Akeneo delta."""
    if isinstance(delta, dict) and isinstance(delta.get(PATCH_KEY), dict):
        patch: dict[str, Any] = delta[PATCH_KEY]
        return patch
    return None
