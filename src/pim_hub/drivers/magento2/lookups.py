"""Magento ids the driver looks up and keeps: products by SKU, attribute ids, category ids.

Option ids live in `options.py` and attribute types in `references.py`; attribute sets and
websites come from the integration's configuration, so nothing needs looking up for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pim_hub.drivers.base import EntityMappingService
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.config import Magento2Config
from pim_hub.drivers.magento2.errors import MissingReference
from pim_hub.drivers.magento2.keys import M_ATTRIBUTE_ID, M_CATEGORY
from pim_hub.drivers.magento2.references import References

#: how many characters of comma-separated SKUs one search by SKU carries at most
SEARCH_SKUS_CHARS = 2000


def split_ref(value: str) -> tuple[int, str]:
    """A mapped product ("<magento id>:<sku>") as (id, sku)."""
    ident, _, sku = value.partition(":")
    return int(ident), sku


async def products_by_sku(api: MagentoClient, skus: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The products of these SKUs, by SKU (missing ones are absent): one search per
    SEARCH_SKUS_CHARS of SKUs, so the URL stays short enough for any web server."""
    chunks: list[list[str]] = [[]]
    size = 0
    for sku in skus:
        if chunks[-1] and size + len(sku) > SEARCH_SKUS_CHARS:
            chunks.append([])
            size = 0
        chunks[-1].append(sku)
        size += len(sku) + 1

    async def search(chunk: list[str]) -> list[dict[str, Any]]:
        rows = await api.call(
            "GET",
            "/V1/products",
            store="all",
            params={
                "searchCriteria[filter_groups][0][filters][0][field]": "sku",
                "searchCriteria[filter_groups][0][filters][0][value]": ",".join(chunk),
                "searchCriteria[filter_groups][0][filters][0][condition_type]": "in",
            },
        )
        return list((rows or {}).get("items") or [])

    found = await asyncio.gather(*(search(c) for c in chunks if c))
    return {str(r["sku"]): r for rows in found for r in rows}


class AttributeIds:
    """Magento's `attribute_id` of each attribute code: kept here, in the mapping, then asked."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    async def get(self, api: MagentoClient, mapping: EntityMappingService, code: str) -> int:
        if code not in self.ids:
            known = await mapping.get(M_ATTRIBUTE_ID, code)
            if known is None:
                found = await api.call("GET", f"/V1/products/attributes/{code}", store="all")
                known = str(found["attribute_id"])
                await mapping.put(M_ATTRIBUTE_ID, code, known)
            self.ids[code] = int(known)
        return self.ids[code]


class CategoryIds:
    """Magento ids of mapped categories; a missing one is waited for a moment (retry mode)."""

    def __init__(self, refs: References) -> None:
        self._refs = refs

    async def ids(
        self, codes: set[str], api: MagentoClient, mapping: EntityMappingService
    ) -> dict[str, int]:
        """The ids of these categories; MissingReference for any not mapped (retry mode)."""
        found = await self.mapped(codes, api, mapping)
        self.check(codes, found, api.config)
        return found

    async def mapped(
        self, codes: set[str], api: MagentoClient, mapping: EntityMappingService
    ) -> dict[str, int]:
        """Magento ids of the categories mapped so far (missing ones waited for a moment)."""
        if not codes:
            return {}
        wait = api.config.reference_wait_s if api.config.missing_reference == "retry" else 0.0
        mapped = await self._refs.await_mapped(mapping, M_CATEGORY, sorted(codes), wait)
        return {k: int(v) for k, v in mapped.items()}

    @staticmethod
    def check(codes: set[str], found: dict[str, int], config: Magento2Config) -> None:
        """Raise MissingReference for categories not found (in skip mode they are left out)."""
        missing = sorted(codes - set(found))
        if missing and config.missing_reference == "retry":
            raise MissingReference(f"categories not synced to Magento yet: {', '.join(missing)}")
