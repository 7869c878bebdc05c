"""Field-level (EAV) diff of indexed entity states and the mutation decision built on it."""

from __future__ import annotations

import hashlib
import operator
import uuid
from dataclasses import dataclass
from itertools import compress
from typing import Any, Final, Literal, NamedTuple

import orjson

from pim_hub.schemas.entities import ENTITY_TYPES
from pim_hub.schemas.errors import InvalidSnapshot
from pim_hub.schemas.versions import compare_versions, parse_version
from pim_hub.services.mutator.core.normalise import (
    CHAIN_KEY,
    CMP_KEY,
    SET_VALUE_TYPES,
    SRC_KEY,
    TYPES_FIELD,
    TYPES_KEY,
    VERSION_KEY,
    denormalise,
    is_set_slot,
    is_tombstone,
    parse_slot,
    source_of,
    tombstone,
)
from pim_hub.services.mutator.core.normalise import index_state as _index_state

#: Namespace of mutation ids; never change it, or replays would mint new ids.
MUTATION_NAMESPACE: Final = uuid.UUID("5b0f3c0e-8f43-5d2a-9c1e-6a1f0e9b7d21")


class Change(NamedTuple):
    """One field-level change: a value, a scalar field, a label or a code set.

    A named tuple rather than a frozen dataclass: the diff builds one per changed slot and a
    tuple is built in one C call (immutability and field access are the same).
    """

    field: str
    attribute: str | None = None
    locale: str | None = None
    scope: str | None = None
    old: Any = None
    new: Any = None
    added: tuple[str, ...] | None = None
    removed: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the mutator does with one snapshot: emit a mutation, or nothing (and why)."""

    kind: Literal["mutation", "noop", "stale", "duplicate"]
    operation: Literal["create", "update", "delete"] | None
    changes: tuple[Change, ...]
    new_state: dict[str, Any] | None
    state_payload: dict[str, Any] | None
    mutation_id: str | None


def index_state(entity_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Indexed state of an Akeneo payload (version = its `updated`); see normalise.index_state.

    Raises:
        InvalidSnapshot: unknown entity type, missing identity or mistyped fields.
    """
    return _index_state(entity_type, payload)


def _set_delta(old_cmp: str | None, new_cmp: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    old: list[str] = orjson.loads(old_cmp) if old_cmp is not None else []
    new: list[str] = orjson.loads(new_cmp) if new_cmp is not None else []
    old_set, new_set = set(old), set(new)
    return tuple(sorted(new_set - old_set)), tuple(sorted(old_set - new_set))


_tuple_new = tuple.__new__


def _make_change(
    field: str,
    attribute: str | None,
    locale: str | None,
    scope: str | None,
    old: Any,
    new: Any,
    added: tuple[str, ...] | None,
    removed: tuple[str, ...] | None,
) -> Change:
    return _tuple_new(Change, (field, attribute, locale, scope, old, new, added, removed))


_loads = orjson.loads
_compress = compress
_map = map
_ne = operator.ne
_MISSING: Final[Any] = object()


def _change_for(
    slot: str,
    old_cmp: str | None,
    new_cmp: str | None,
    previous: dict[str, Any] | None,
    current: dict[str, Any],
) -> Change:
    if slot.startswith("values|"):
        # Hot path: product values are most of the slots and never plain code sets.
        attribute, locale, scope = slot[7:].rsplit("|", 2)
        old: Any = None
        if old_cmp is not None and previous is not None:
            old = previous[SRC_KEY].get(slot, _MISSING)
            if old is _MISSING:
                old = _loads(old_cmp)
        new: Any = None
        if new_cmp is not None:
            new = current[SRC_KEY].get(slot, _MISSING)
            if new is _MISSING:
                new = _loads(new_cmp)
        added = removed = None
        if (
            old_cmp is not None
            and new_cmp is not None
            and current[TYPES_KEY].get(attribute) in SET_VALUE_TYPES
            and old_cmp.startswith("[")
            and new_cmp.startswith("[")
        ):
            added, removed = _set_delta(old_cmp, new_cmp)
        return _make_change(
            "values", attribute, locale or None, scope or None, old, new, added, removed
        )
    field, attr, loc, sc = parse_slot(slot)
    if is_set_slot(slot):
        added, removed = _set_delta(old_cmp, new_cmp)
        return _make_change(field, attr, loc, sc, None, None, added, removed)
    old = source_of(previous, slot) if previous is not None and old_cmp is not None else None
    new = source_of(current, slot) if new_cmp is not None else None
    return _make_change(field, attr, loc, sc, old, new, None, None)


def diff(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[Change]:
    """Field-level changes from one indexed state to another, sorted by slot.

    Attribute-type bookkeeping comes first as `_attribute_types` changes (needed by apply;
    decide drops them from mutations).

    Args:
        previous: indexed state before, or None for a creation (every field is a change).
        current: indexed state after.

    Returns:
        The changes; empty when the two states have the same content.
    """
    changes: list[Change] = []
    cur_cmp: dict[str, str] = current[CMP_KEY]
    if previous is None:
        prev_cmp: dict[str, str] = {}
        prev_types: dict[str, str] = {}
    else:
        prev_cmp = previous[CMP_KEY]
        prev_types = previous[TYPES_KEY]
    cur_types: dict[str, str] = current[TYPES_KEY]
    if prev_types != cur_types:
        for attribute in sorted(prev_types.keys() | cur_types.keys()):
            old_type, new_type = prev_types.get(attribute), cur_types.get(attribute)
            if old_type != new_type:
                changes.append(Change(TYPES_FIELD, attribute, old=old_type, new=new_type))
    if prev_cmp == cur_cmp:
        # Fast path for duplicates and re-syncs: dict equality runs in C.
        return changes
    get = prev_cmp.get
    cur_slots = list(cur_cmp)
    if len(cur_slots) == len(prev_cmp) and cur_slots == list(prev_cmp):
        # Same slots in the same order (the usual case: Akeneo sends values in a stable order
        # and the stored state keeps it): compare the two value lists pairwise entirely in C.
        slots = list(_compress(cur_slots, _map(_ne, cur_cmp.values(), prev_cmp.values())))
    else:
        slots = [slot for slot, cmp in cur_cmp.items() if get(slot) != cmp]
        added_slots = sum(1 for slot in slots if slot not in prev_cmp)
        if len(prev_cmp) != len(cur_cmp) - added_slots:
            slots.extend(slot for slot in prev_cmp if slot not in cur_cmp)
    slots.sort()
    cur_get = cur_cmp.get
    prev_src: dict[str, Any] = previous[SRC_KEY] if previous is not None else {}
    cur_src: dict[str, Any] = current[SRC_KEY]
    append = changes.append
    for slot in slots:
        old_cmp, new_cmp = get(slot), cur_get(slot)
        parsed = _VALUE_SLOTS.get(slot)
        if parsed is None:
            if not slot.startswith("values|"):
                append(_change_for(slot, old_cmp, new_cmp, previous, current))
                continue
            parsed = _parse_value_slot(slot)
        # Hot path, inlined: product values are most of the slots and never plain code sets.
        attribute, locale, scope = parsed
        old: Any = None
        if old_cmp is not None:
            old = prev_src.get(slot, _MISSING)
            if old is _MISSING:
                old = _loads(old_cmp)
        new: Any = None
        if new_cmp is not None:
            new = cur_src.get(slot, _MISSING)
            if new is _MISSING:
                new = _loads(new_cmp)
        added = removed = None
        if (
            old_cmp is not None
            and new_cmp is not None
            and old_cmp[:1] == "["
            and new_cmp[:1] == "["
            and cur_types.get(attribute) in SET_VALUE_TYPES
        ):
            added, removed = _set_delta(old_cmp, new_cmp)
        append(_tuple_new(Change, ("values", attribute, locale, scope, old, new, added, removed)))
    return changes


# "values|<attribute>|<locale>|<scope>" -> (attribute, locale or None, scope or None); slot
# names repeat across a catalogue, so each is split once.
_VALUE_SLOTS: Final[dict[str, tuple[str, str | None, str | None]]] = {}


def _parse_value_slot(slot: str) -> tuple[str, str | None, str | None]:
    attribute, locale, scope = slot[7:].rsplit("|", 2)
    parsed = (attribute, locale or None, scope or None)
    if len(_VALUE_SLOTS) >= 200_000:
        _VALUE_SLOTS.clear()  # a bound, not an LRU: a catalogue has far fewer slots than this
    _VALUE_SLOTS[slot] = parsed
    return parsed


def change_to_record(c: Change) -> dict[str, Any]:
    """The Avro record shape of a change: old/new as JSON text, added/removed as lists."""
    return {
        "field": c.field,
        "attribute": c.attribute,
        "locale": c.locale,
        "scope": c.scope,
        "old": None if c.old is None else orjson.dumps(c.old).decode(),
        "new": None if c.new is None else orjson.dumps(c.new).decode(),
        "added": None if c.added is None else list(c.added),
        "removed": None if c.removed is None else list(c.removed),
    }


def change_from_record(record: dict[str, Any]) -> Change:
    """Inverse of change_to_record.

    Raises:
        InvalidSnapshot: the record is not a change record.
    """
    try:
        field = record["field"]
        old = record.get("old")
        new = record.get("new")
        added = record.get("added")
        removed = record.get("removed")
        if not isinstance(field, str):
            raise TypeError("field must be a string")
        return Change(
            field=field,
            attribute=record.get("attribute"),
            locale=record.get("locale"),
            scope=record.get("scope"),
            old=None if old is None else orjson.loads(old),
            new=None if new is None else orjson.loads(new),
            added=None if added is None else tuple(added),
            removed=None if removed is None else tuple(removed),
        )
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise InvalidSnapshot(f"not a change record: {exc}") from exc


def content_hash(state: dict[str, Any]) -> str:
    """Stable hash of an indexed state's content (comparison and source text, not version)."""
    # The bytes of normalise.dumps (sorted keys), without decoding them to text and back.
    body = orjson.dumps(
        {"c": state.get(CMP_KEY, {}), "s": state.get(SRC_KEY, {})}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def mutation_id(entity_key: str, version: str | None, digest: str) -> str:
    """Deterministic mutation id: the same entity, version and content always give the same id."""
    return str(uuid.uuid5(MUTATION_NAMESPACE, f"{entity_key}\n{version or ''}\n{digest}"))


def nothing(
    kind: Literal["noop", "stale", "duplicate"], new_state: dict[str, Any] | None = None
) -> Decision:
    return Decision(kind, None, (), new_state, None, None)


def _content_changes(changes: list[Change]) -> tuple[Change, ...]:
    return tuple(c for c in changes if c.field != TYPES_FIELD)


def check_type(entity_type: str) -> None:
    if entity_type not in ENTITY_TYPES:
        raise InvalidSnapshot(f"unknown entity type {entity_type!r}")


def decide_state(
    entity_type: str, entity_key: str, stored: dict[str, Any] | None, current: dict[str, Any]
) -> Decision:
    """Decide on an already indexed incoming state (see decide)."""
    version: str | None = current[VERSION_KEY]
    stored_version: str | None = stored.get(VERSION_KEY) if stored is not None else None
    order = compare_versions(version, stored_version)
    if order == -1:
        # An older snapshot delivered late: the stored state already reflects something newer.
        return nothing("stale")
    if stored is not None and CHAIN_KEY in stored and CHAIN_KEY not in current:
        # The chain is bookkeeping, not content: carried over, an unchanged state still
        # compares equal to the stored one (a duplicate writes nothing).
        current = {**current, CHAIN_KEY: stored[CHAIN_KEY]}
    if version is None and stored_version is not None:
        # Without a version we cannot order this snapshot, but we must not lose the guard.
        current = {**current, VERSION_KEY: stored_version}
        version = stored_version
    if stored is None or is_tombstone(stored):
        changes = _content_changes(diff(None, current))
        return Decision(
            "mutation",
            "create",
            changes,
            current,
            denormalise(current),
            mutation_id(entity_key, version, content_hash(current)),
        )
    changes = _content_changes(diff(stored, current))
    if not changes:
        if current == stored:
            return nothing("duplicate" if order == 0 else "noop")
        # Same content, but a newer version or new source text/types: remember them, so a
        # snapshot older than this one is recognised as stale later.
        return nothing("duplicate" if order == 0 else "noop", current)
    return Decision(
        "mutation",
        "update",
        changes,
        current,
        denormalise(current),
        mutation_id(entity_key, version, content_hash(current)),
    )


def decide(
    entity_type: str,
    entity_key: str,
    stored: dict[str, Any] | None,
    payload: dict[str, Any] | None,
    version: str | None,
) -> Decision:
    """Decide what one snapshot means for an entity.

    Args:
        entity_type: one of ENTITY_TYPES.
        entity_key: the entity key (see entities.entity_key); seeds the mutation id.
        stored: the `new_state` of the previous decision for this entity, or None.
        payload: the Akeneo payload, or None for a deletion tombstone.
        version: the source version (Akeneo `updated`); None falls back to the payload's.

    Returns:
        mutation create/update/delete, or noop / stale / duplicate with what to store.

    Raises:
        InvalidSnapshot: unknown entity type, invalid payload or unparsable version.
    """
    check_type(entity_type)
    if payload is None:
        return _decide_tombstone(entity_type, entity_key, stored, version)
    current = _index_state(entity_type, payload)
    if version is not None:
        current[VERSION_KEY] = version
    return decide_state(entity_type, entity_key, stored, current)


def _decide_tombstone(
    entity_type: str, entity_key: str, stored: dict[str, Any] | None, version: str | None
) -> Decision:
    stored_version: str | None = stored.get(VERSION_KEY) if stored is not None else None
    order = compare_versions(version, stored_version)
    if stored is None or is_tombstone(stored):
        # Nothing to delete; still remember the deletion time so an older create is stale.
        if stored is None:
            return nothing("noop", tombstone(entity_type, version) if version else None)
        if order == 0 or (order is None and version == stored_version):
            return nothing("duplicate")
        return nothing("noop", tombstone(entity_type, version) if order == 1 else None)
    if order == -1:
        return nothing("stale")
    return Decision(
        "mutation",
        "delete",
        (),
        tombstone(entity_type, version or stored_version),
        denormalise(stored),
        mutation_id(entity_key, version or stored_version, "deleted:" + content_hash(stored)),
    )


__all__ = [
    "MUTATION_NAMESPACE",
    "Change",
    "Decision",
    "change_from_record",
    "change_to_record",
    "compare_versions",
    "content_hash",
    "decide",
    "decide_state",
    "diff",
    "index_state",
    "mutation_id",
    "parse_version",
]
