"""Categories: Akeneo's category tree mirrored under the configured Magento roots."""

from __future__ import annotations

from typing import Any

from pim_hub.drivers.base import DeliveryResult, EntityMappingService
from pim_hub.drivers.magento2 import builder
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.deletes import delete_category
from pim_hub.drivers.magento2.errors import NotFound
from pim_hub.drivers.magento2.keys import M_CATEGORY
from pim_hub.drivers.magento2.lookups import CategoryIds
from pim_hub.drivers.magento2.references import References
from pim_hub.schemas.events import Job


class Categories:
    """Creates, renames, moves and deletes categories; records each one's Magento id."""

    def __init__(self, refs: References, ids: CategoryIds) -> None:
        self._refs = refs
        self._ids = ids

    async def _find(self, api: MagentoClient, parent_id: int, code: str, name: str) -> int | None:
        """An existing child of `parent_id` created for this code (its url_key), if any."""
        tree = await api.call(
            "GET", "/V1/categories", params={"rootCategoryId": str(parent_id), "depth": "1"}
        )
        slug = builder.slugify(code)
        for child in (tree or {}).get("children_data") or []:
            if child.get("name") != name:
                continue
            full = await api.call("GET", f"/V1/categories/{child['id']}", store="all")
            attrs = {a["attribute_code"]: a["value"] for a in full.get("custom_attributes") or []}
            if attrs.get("url_key") == slug:
                return int(child["id"])
        return None

    async def deliver(
        self, job: Job, state: dict[str, Any], api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
        """Create the category under its parent (or adopt one made for it), then keep its
        name, parent and store view names as Akeneo has them; a root maps to a Magento root."""
        code = state.get("code")
        if not isinstance(code, str):
            return DeliveryResult.permanent("a category needs a code", kind="bad_input")
        mapped = await mapping.get(M_CATEGORY, code)
        if job.mutation.operation == "delete":
            return await delete_category(state, mapped, api)
        with self._refs.delivering(M_CATEGORY, [code]):
            return await self._upsert(state, code, mapped, api, mapping)

    async def _upsert(
        self,
        state: dict[str, Any],
        code: str,
        mapped: str | None,
        api: MagentoClient,
        mapping: EntityMappingService,
    ) -> DeliveryResult:
        config = api.config
        parent = state.get("parent")
        if parent is None:
            # A tree root maps to an existing Magento root; Magento's root is never renamed.
            root_id = config.category_roots.get(code, config.default_root_category_id)
            await mapping.put(M_CATEGORY, code, str(root_id))
            self._refs.wrote_mappings()
            return DeliveryResult.delivered(target_ref=str(root_id))
        parent_id = (await self._ids.ids({parent}, api, mapping)).get(parent)
        if parent_id is None:
            return DeliveryResult.skipped(f"parent category {parent!r} not synced (skip mode)")
        name = builder.category_name(state, config.admin_locale)
        category_id: int | None = int(mapped) if mapped is not None else None
        if category_id is not None:
            try:
                current = await api.call("GET", f"/V1/categories/{category_id}", store="all")
            except NotFound:
                category_id = None  # deleted in Magento: create it again
        if category_id is None:
            category_id = await self._find(api, parent_id, code, name)
            if category_id is None:
                body = {"category": builder.build_category(state, config, parent_id)}
                created = await api.call("POST", "/V1/categories", body, store="all")
                category_id = int(created["id"])
            await mapping.put(M_CATEGORY, code, str(category_id))
            self._refs.wrote_mappings()
            current = await api.call("GET", f"/V1/categories/{category_id}", store="all")
        if current.get("name") != name:
            await api.call(
                "PUT", f"/V1/categories/{category_id}", {"category": {"name": name}}, store="all"
            )
        if int(current.get("parent_id") or 0) != parent_id:
            # afterId omitted: Magento appends the category after its new siblings.
            await api.call("PUT", f"/V1/categories/{category_id}/move", {"parentId": parent_id})
        for view, label in sorted(builder.category_store_names(state, config).items()):
            await api.call(
                "PUT", f"/V1/categories/{category_id}", {"category": {"name": label}}, store=view
            )
        return DeliveryResult.delivered(target_ref=str(category_id))

    # ------------------------------------------------------------------ products
