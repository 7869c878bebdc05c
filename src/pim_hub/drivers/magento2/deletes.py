"""Deletions that reach Magento: products (deleted or disabled) and categories.

Attribute, option and family variant deletions stop at the driver (see `attributes.py`):
products in Magento may still use them.
"""

from __future__ import annotations

from typing import Any

from pim_hub.drivers.base import DeliveryResult, EntityMappingService
from pim_hub.drivers.magento2 import builder
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.errors import MappingError, NotFound
from pim_hub.drivers.magento2.keys import M_PRODUCT
from pim_hub.drivers.magento2.lookups import split_ref


async def delete_product(
    state: dict[str, Any],
    entity_key: str,
    api: MagentoClient,
    mapping: EntityMappingService,
    map_type: str = M_PRODUCT,
) -> DeliveryResult:
    """Delete the product, or disable it (`on_delete: disable`); a missing one is done."""
    mapped = await mapping.get(map_type, entity_key)
    try:
        sku = split_ref(mapped)[1] if mapped else builder.identifier_of(state, api.config)
    except MappingError:
        return DeliveryResult.skipped("never delivered and no identifier in the state")
    if api.config.on_delete == "delete":
        try:
            await api.call("DELETE", f"/V1/products/{sku}", store="all")
        except NotFound:
            return DeliveryResult.delivered(target_ref=sku)  # already gone
        return DeliveryResult.delivered(target_ref=sku)
    try:
        # A PUT on a missing SKU would create a stub product: check it exists first.
        await api.call("GET", f"/V1/products/{sku}", store="all")
    except NotFound:
        return DeliveryResult.skipped(f"{sku} is not in Magento: nothing to disable")
    body = {"sku": sku, "status": builder.STATUS_DISABLED}
    await api.call("PUT", f"/V1/products/{sku}", {"product": body}, store="all")
    return DeliveryResult.delivered(target_ref=sku)


async def delete_category(
    state: dict[str, Any], mapped: str | None, api: MagentoClient
) -> DeliveryResult:
    """Delete the category mapped to `mapped`; tree roots (Magento's own) are kept."""
    if mapped is None or state.get("parent") is None:
        return DeliveryResult.skipped("category never delivered (or a tree root)")
    try:
        await api.call("DELETE", f"/V1/categories/{mapped}")
    except NotFound:
        pass  # already gone: the deletion is done either way
    return DeliveryResult.delivered(target_ref=mapped)
