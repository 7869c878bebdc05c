"""Which decision a snapshot gets when entities have several sources (patches, ownership).

Between the snapshot record and the pure core: a delta carrying a patch goes to
core.sources.decide_patch, an Akeneo delta to core.apply, and a full snapshot of the default
source is laid over the other sources' fields (core.sources.protect) before the diff.
"""

from __future__ import annotations

from typing import Any

import orjson

from pim_hub.schemas.limits import check_json_text
from pim_hub.schemas.ownership import Ownership, patch_of
from pim_hub.services.mutator.core import apply, diffing, sources
from pim_hub.services.mutator.core.diffing import Decision
from pim_hub.services.mutator.core.normalise import VERSION_KEY, is_tombstone


def _keep_source_versions(decision: Decision, stored: dict[str, Any] | None) -> Decision:
    # An Akeneo delta rebuilds the state from its content: the other sources' versions stay.
    new = decision.new_state
    if (
        stored is not None
        and sources.SOURCE_VERSIONS_KEY in stored
        and new is not None
        and not is_tombstone(new)
        and sources.SOURCE_VERSIONS_KEY not in new
    ):
        new[sources.SOURCE_VERSIONS_KEY] = dict(stored[sources.SOURCE_VERSIONS_KEY])
    return decision


def decide_with_sources(
    ownership: Ownership,
    entity_type: str,
    entity_key: str,
    stored: dict[str, Any] | None,
    payload: dict[str, Any] | None,
    delta_text: str | None,
    version: str | None,
) -> Decision:
    """The decision for one snapshot (full, tombstone, Akeneo delta or source patch)."""
    if delta_text is not None:
        delta = orjson.loads(delta_text)
        check_json_text("delta", delta_text, delta)
        patch = patch_of(delta)
        if patch is not None:
            diffing.check_type(entity_type)
            return sources.decide_patch(entity_key, stored, patch, version, ownership)
        decision = apply.decide_delta(entity_type, entity_key, stored, delta, version)
        if ownership.active and decision.kind == "mutation" and decision.new_state is not None:
            if decision.operation == "update" and not is_tombstone(decision.new_state):
                # An Akeneo delta may not change what another source owns either.
                protected = sources.protect(decision.new_state, stored, ownership)
                return diffing.decide_state(entity_type, entity_key, stored, protected)
        return _keep_source_versions(decision, stored)
    if payload is None or not ownership.active:
        return diffing.decide(entity_type, entity_key, stored, payload, version)
    diffing.check_type(entity_type)
    current = diffing.index_state(entity_type, payload)
    if version is not None:
        current[VERSION_KEY] = version
    protected = sources.protect(current, stored, ownership)
    return diffing.decide_state(entity_type, entity_key, stored, protected)
