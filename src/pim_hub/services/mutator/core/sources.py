"""Several sources of one entity: field ownership on snapshots, patches, versions per source.

Pure: the decisions of pim_hub.services.mutator.processing for patches (see
pim_hub.schemas.ownership) and for full snapshots when some fields belong to another source.
Each source's last version is kept in the state under SOURCE_VERSIONS_KEY; the state's own
version stays the default source's (Akeneo's), so the two clocks never decide against each
other.
"""

from __future__ import annotations

from typing import Any, Final

from pim_hub.schemas.errors import InvalidSnapshot
from pim_hub.schemas.ownership import (
    Ownership,
    PatchRefused,
    check_ownership,
    parse_patch_body,
)
from pim_hub.schemas.versions import compare_versions
from pim_hub.services.mutator.core import apply as apply_mod
from pim_hub.services.mutator.core import diffing
from pim_hub.services.mutator.core.diffing import Change, Decision
from pim_hub.services.mutator.core.normalise import (
    CMP_KEY,
    SRC_KEY,
    TYPES_FIELD,
    denormalise,
    is_tombstone,
    parse_slot,
)

#: {source: version} of the last patch of each non-default source.
SOURCE_VERSIONS_KEY: Final = "sv"


def slot_name(slot: str) -> str:
    """The ownership name of a slot: `values.<attribute>`, or its top-level field."""
    field, attribute, _locale, _scope = parse_slot(slot)
    return f"values.{attribute}" if field == "values" else field


def protect(
    current: dict[str, Any], stored: dict[str, Any] | None, ownership: Ownership
) -> dict[str, Any]:
    """A full snapshot of the default source, changing only what that source owns.

    Fields another source owns are dropped from the snapshot and kept as stored, with the
    other sources' versions.
    """
    if not ownership.active:
        return current
    foreign = {
        slot for slot in current[CMP_KEY] if ownership.owner(slot_name(slot)) != ownership.default
    }
    c = {k: v for k, v in current[CMP_KEY].items() if k not in foreign}
    s = {k: v for k, v in current[SRC_KEY].items() if k not in foreign}
    out = {**current, CMP_KEY: c, SRC_KEY: s}
    if stored is not None and not is_tombstone(stored):
        for slot, cmp in stored[CMP_KEY].items():
            if ownership.owner(slot_name(slot)) != ownership.default:
                c[slot] = cmp
                if slot in stored[SRC_KEY]:
                    s[slot] = stored[SRC_KEY][slot]
        if SOURCE_VERSIONS_KEY in stored:
            out[SOURCE_VERSIONS_KEY] = dict(stored[SOURCE_VERSIONS_KEY])
    return out


def decide_patch(
    entity_key: str,
    stored: dict[str, Any] | None,
    patch: dict[str, Any],
    version: str | None,
    ownership: Ownership,
) -> Decision:
    """What one patch means for the stored entity: an update of what it changes, or nothing.

    Raises:
        PatchRefused: unknown source, a field of another source, a bad payload, an entity
            the mutator has not seen (or deleted).
    """
    source = str(patch.get("source"))
    mode = patch.get("mode", "patch")
    if mode not in ("patch", "replace"):
        raise PatchRefused(f"unknown patch mode {mode!r} (patch or replace)", "bad_patch")
    body = parse_patch_body(patch.get("payload"))
    check_ownership(ownership, source, body)
    if stored is None or is_tombstone(stored):
        raise PatchRefused(
            f"{entity_key} is {'deleted' if stored else 'unknown'}: a patch changes an entity "
            "the hub has, it does not create one",
            "unseen_entity",
        )
    versions: dict[str, Any] = dict(stored.get(SOURCE_VERSIONS_KEY, {}))
    order = compare_versions(version, versions.get(source))
    if order == -1:
        return diffing.nothing("stale")
    changes: list[Change] = [
        Change("values", v.attribute, v.locale, v.scope, new=v.data) for v in body.values
    ]
    changes += [Change(name, new=value) for name, value in body.fields.items()]
    if mode == "replace":
        touched = {
            f"values|{v.attribute}|{v.locale or ''}|{v.scope or ''}" for v in body.values
        } | set(body.fields)
        for slot in stored[CMP_KEY]:
            if slot not in touched and ownership.owner(slot_name(slot)) == source:
                field, attribute, locale, scope = parse_slot(slot)
                changes.append(Change(field, attribute, locale, scope, new=None))
    try:
        new_state = apply_mod.apply(stored, changes)
    except InvalidSnapshot as exc:
        raise PatchRefused(str(exc), "bad_patch") from exc
    new_state[SOURCE_VERSIONS_KEY] = {**versions, source: version}
    content = tuple(c for c in diffing.diff(stored, new_state) if c.field != TYPES_FIELD)
    if not content:
        return diffing.nothing("duplicate" if order == 0 else "noop", new_state)
    return Decision(
        "mutation",
        "update",
        content,
        new_state,
        denormalise(new_state),
        diffing.mutation_id(entity_key, version, diffing.content_hash(new_state)),
    )
