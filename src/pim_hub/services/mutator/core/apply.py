"""Applies field-level changes (from diff or Event Platform deltas) to an indexed state."""

from __future__ import annotations

from typing import Any, Final

import orjson

from pim_hub.schemas.errors import DeltaWithoutBase, InvalidSnapshot
from pim_hub.schemas.versions import compare_versions, delta_version
from pim_hub.services.mutator.core import diffing
from pim_hub.services.mutator.core.diffing import Change, change_from_record
from pim_hub.services.mutator.core.normalise import (
    CMP_KEY,
    EXTRA_KEY,
    LINKED_KEY,
    SRC_KEY,
    TYPE_KEY,
    TYPES_FIELD,
    TYPES_KEY,
    VERSION_KEY,
    is_set_slot,
    is_tombstone,
    make_slot,
    put_source,
    source_of,
)

_KEEP: Final[Any] = object()


def apply(
    state: dict[str, Any], changes: list[Change] | tuple[Change, ...], *, version: Any = _KEEP
) -> dict[str, Any]:
    """Return a new indexed state: `state` with `changes` applied (the input is not modified).

    Values go through the same normalisation as index_state, so
    `apply(a, diff(a, b))` has the content of `b`.

    Args:
        state: an indexed state.
        changes: changes as produced by diff (set fields use added/removed, the rest `new`,
            None meaning removed).
        version: the version of the result; by default the version of `state`.

    Raises:
        InvalidSnapshot: a change carries a value of the wrong JSON type for its field.
    """
    result: dict[str, Any] = {
        TYPE_KEY: state[TYPE_KEY],
        VERSION_KEY: state[VERSION_KEY] if version is _KEEP else version,
        CMP_KEY: dict(state[CMP_KEY]),
        SRC_KEY: dict(state[SRC_KEY]),
        TYPES_KEY: dict(state[TYPES_KEY]),
    }
    # Fields kept but not compared (created, quality scores, ...) stay as the last full
    # snapshot gave them: a change does not carry them.
    if state.get(EXTRA_KEY):
        result[EXTRA_KEY] = state[EXTRA_KEY]
    if state.get(LINKED_KEY):
        result[LINKED_KEY] = dict(state[LINKED_KEY])  # put_source drops a changed value's
    types: dict[str, str] = result[TYPES_KEY]
    # Types first: how a value is compared depends on its attribute's type.
    for change in changes:
        if change.field == TYPES_FIELD and change.attribute is not None:
            if change.new is None:
                types.pop(change.attribute, None)
            elif isinstance(change.new, str):
                types[change.attribute] = change.new
            else:
                raise InvalidSnapshot(f"attribute type of {change.attribute} must be a string")
    for change in changes:
        if change.field == TYPES_FIELD:
            continue
        slot = make_slot(change.field, change.attribute, change.locale, change.scope)
        if is_set_slot(slot) and (change.added is not None or change.removed is not None):
            cmp = result[CMP_KEY].get(slot)
            codes: set[str] = set(orjson.loads(cmp)) if cmp is not None else set()
            codes.difference_update(change.removed or ())
            codes.update(change.added or ())
            put_source(result, slot, sorted(codes) or None)
        else:
            put_source(result, slot, change.new)
    if LINKED_KEY in result and not result[LINKED_KEY]:
        del result[LINKED_KEY]
    return result


def _targets(raw: Any, where: str) -> dict[str, list[Any]]:
    # Association deltas list targets per kind ({"products": [...], ...}); a bare list is
    # taken as products, the only kind older payloads had.
    if raw is None:
        return {}
    if isinstance(raw, list):
        return {"products": raw}
    if isinstance(raw, dict) and all(isinstance(v, list) for v in raw.values()):
        return raw
    raise InvalidSnapshot(f"unsupported delta shape at {where}")


def _target_id(item: Any, where: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("uuid", "identifier", "code"):
            if isinstance(item.get(key), str):
                return str(item[key])
    raise InvalidSnapshot(f"unsupported association target at {where}: {item!r}")


def _values_changes(state: dict[str, Any], field: str, spec: Any, out: list[Change]) -> None:
    if not isinstance(spec, dict):
        raise InvalidSnapshot(f"delta '{field}' must be an object")
    types: dict[str, str] = state[TYPES_KEY]
    for attribute, items in spec.items():
        if not isinstance(items, list):
            raise InvalidSnapshot(f"delta '{field}.{attribute}' must be a list")
        for item in items:
            if not isinstance(item, dict):
                raise InvalidSnapshot(f"delta '{field}.{attribute}' items must be objects")
            declared = item.get("type")
            if isinstance(declared, str) and types.get(attribute) != declared:
                out.append(Change(TYPES_FIELD, attribute, old=types.get(attribute), new=declared))
            out.append(
                Change(
                    "values",
                    attribute,
                    item.get("locale"),
                    item.get("scope"),
                    old=item.get("previous"),
                    new=item.get("new"),
                )
            )


def _association_changes(state: dict[str, Any], field: str, spec: Any, out: list[Change]) -> None:
    if not isinstance(spec, dict):
        raise InvalidSnapshot(f"delta '{field}' must be an object")
    for assoc_type, moves in spec.items():
        where = f"{field}.{assoc_type}"
        if not isinstance(moves, dict):
            raise InvalidSnapshot(f"delta '{where}' must be an object")
        added = _targets(moves.get("added"), where + ".added")
        removed = _targets(moves.get("removed"), where + ".removed")
        for kind in sorted(added.keys() | removed.keys()):
            attribute = f"{assoc_type}.{kind}"
            if field == "associations":
                out.append(
                    Change(
                        field,
                        attribute,
                        added=tuple(_target_id(t, where) for t in added.get(kind, [])),
                        removed=tuple(_target_id(t, where) for t in removed.get(kind, [])),
                    )
                )
                continue
            # Quantified targets carry a quantity: rebuild the whole list for this kind.
            current = source_of(state, make_slot(field, attribute, None, None)) or []
            gone = {_target_id(t, where) for t in removed.get(kind, [])}
            fresh = {_target_id(t, where): t for t in added.get(kind, [])}
            kept = [t for t in current if _target_id(t, where) not in gone | fresh.keys()]
            result = kept + list(fresh.values())
            out.append(Change(field, attribute, new=result or None))


def _akeneo_changes(state: dict[str, Any], changes: dict[str, Any]) -> list[Change]:
    out: list[Change] = []
    for field, spec in changes.items():
        if field in ("values", "table_attributes"):
            # Table attributes are reported apart but are ordinary values of the product.
            _values_changes(state, field, spec, out)
        elif field in ("associations", "quantified_associations"):
            _association_changes(state, field, spec, out)
        elif isinstance(spec, dict) and ("added" in spec or "removed" in spec):
            out.append(
                Change(
                    field,
                    added=tuple(_target_id(t, field) for t in spec.get("added") or []),
                    removed=tuple(_target_id(t, field) for t in spec.get("removed") or []),
                )
            )
        elif isinstance(spec, dict) and "new" in spec:
            out.append(Change(field, old=spec.get("previous"), new=spec["new"]))
        else:
            raise InvalidSnapshot(f"unsupported delta shape for '{field}'")
    return out


def apply_delta(
    state: dict[str, Any], delta_changes: list[dict[str, Any]] | dict[str, Any]
) -> dict[str, Any]:
    """Apply Event Platform delta `changes` objects (or change records) in order.

    Each item is either an Akeneo `changes` object ({"enabled": {"previous", "new"},
    "categories": {"added", "removed"}, "values": {attr: [{previous, new, type, locale,
    scope}]}, "associations": {TYPE: {added, removed}}, ...}) or a record from
    change_to_record. Previous values are not checked: the delta's new value wins, as a full
    snapshot would.

    Raises:
        InvalidSnapshot: an item of an unsupported shape.
    """
    items = [delta_changes] if isinstance(delta_changes, dict) else delta_changes
    if not isinstance(items, list):
        raise InvalidSnapshot("delta changes must be a list of objects")
    for item in items:
        if not isinstance(item, dict):
            raise InvalidSnapshot("delta changes must be a list of objects")
        if isinstance(item.get("field"), str):
            changes = [change_from_record(item)]
        else:
            changes = _akeneo_changes(state, item)
        state = apply(state, changes)
    return state


__all__ = ["apply", "apply_delta", "delta_version"]


def decide_delta(
    entity_type: str,
    entity_key: str,
    stored: dict[str, Any] | None,
    delta_changes: list[dict[str, Any]],
    version: str | None,
) -> diffing.Decision:
    """Apply an Event Platform `*.updated.delta` to the stored state and decide on the result.

    The decision (changes, new state, mutation id) is the one a full snapshot of the
    resulting entity would have produced.

    Args:
        entity_type: "product" or "product_model" (any type works).
        entity_key: the entity key.
        stored: the stored state.
        delta_changes: Akeneo `data.<entity>.changes` objects, or change records as built by
            change_to_record (both forms may be mixed).
        version: the delta's `updated_at` as ISO 8601 (see pim_hub.schemas.versions.delta_version).

    Raises:
        DeltaWithoutBase: nothing (or a tombstone) is stored; fetch a full snapshot instead.
        InvalidSnapshot: the delta is malformed.
    """
    diffing.check_type(entity_type)
    if stored is None or is_tombstone(stored):
        raise DeltaWithoutBase(entity_key)
    if compare_versions(version, stored.get(VERSION_KEY)) == -1:
        return diffing.nothing("stale")
    current = apply_delta(stored, delta_changes)
    if version is not None:
        current[VERSION_KEY] = version
    return diffing.decide_state(entity_type, entity_key, stored, current)
