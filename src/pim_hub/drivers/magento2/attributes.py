"""The catalogue's structure: attribute types, family variant axes, options and families.

Only options are written to Magento; attribute types and variant axes are recorded in the
mapping service for the products that need them, and families map to attribute sets by
configuration. Deletions of these stop here: products in Magento may still use them.
"""

from __future__ import annotations

from typing import Any

from pim_hub.drivers.base import DeliveryResult, EntityMappingService
from pim_hub.drivers.magento2.builder import OptionRef
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.config import Magento2Config
from pim_hub.drivers.magento2.keys import M_AXES, M_TYPE
from pim_hub.drivers.magento2.options import OptionCatalogue
from pim_hub.drivers.magento2.references import References
from pim_hub.schemas.events import Job


async def attribute(
    job: Job, state: dict[str, Any], mapping: EntityMappingService, refs: References
) -> DeliveryResult:
    """Record an attribute's Akeneo type (products' values may not carry it)."""
    code, type_ = state.get("code"), state.get("type")
    if not isinstance(code, str) or not isinstance(type_, str):
        return DeliveryResult.permanent("an attribute needs a code and a type", kind="bad_input")
    if job.mutation.operation == "delete":
        return DeliveryResult.skipped("attribute deletions do not reach Magento")
    await mapping.put(M_TYPE, code, type_)
    refs.types[code] = type_
    return DeliveryResult.delivered(target_ref=f"type:{code}")


async def family_variant(
    job: Job, state: dict[str, Any], mapping: EntityMappingService
) -> DeliveryResult:
    """Record a family variant's axes, level by level (a configurable's options)."""
    code = state.get("code")
    if not isinstance(code, str):
        return DeliveryResult.permanent("a family variant needs a code", kind="bad_input")
    if job.mutation.operation == "delete":
        return DeliveryResult.skipped("family variant deletions do not reach Magento")
    sets = sorted(state.get("variant_attribute_sets") or [], key=lambda s: s.get("level", 0))
    axes = [a for s in sets for a in s.get("axes") or []]
    await mapping.put(M_AXES, code, ",".join(axes))
    return DeliveryResult.delivered(target_ref=f"axes:{code}")


async def attribute_option(
    job: Job,
    state: dict[str, Any],
    api: MagentoClient,
    mapping: EntityMappingService,
    opts: OptionCatalogue,
) -> DeliveryResult:
    """Create the option (with its labels) in each Magento attribute its attribute maps to."""
    attribute, code = state.get("attribute"), state.get("code")
    if not isinstance(attribute, str) or not isinstance(code, str):
        return DeliveryResult.permanent("an option needs attribute and code", kind="bad_input")
    if job.mutation.operation == "delete":
        return DeliveryResult.skipped("options are kept in Magento: products may use them")
    targets = [r.magento for r in api.config.attributes if r.akeneo == attribute]
    if not targets and api.config.map_unlisted_attributes:
        targets = [attribute]
    if not targets:
        return DeliveryResult.skipped(f"attribute {attribute!r} has no rule")
    wanted = {OptionRef(t, attribute, code) for t in targets}
    ids = await opts.ensure(wanted, api, mapping, labels=state.get("labels") or {})
    return DeliveryResult.delivered(target_ref=",".join(sorted(ids.values())))


def family(state: dict[str, Any], config: Magento2Config) -> DeliveryResult:
    """Families map to attribute sets by configuration: nothing to send."""
    set_id = config.attribute_sets.get(str(state.get("code")))
    if set_id is None:
        return DeliveryResult.skipped(
            f"family {state.get('code')!r} has no attribute set mapping; its products "
            f"use attribute set {config.default_attribute_set_id}"
        )
    return DeliveryResult.skipped(f"families map to attribute set {set_id} by configuration")
