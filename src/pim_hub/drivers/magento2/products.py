"""Products and product models: payloads built from Akeneo states, created or updated.

A creation sends the full payload; an update sends only the changed fields, and falls back
to a creation when the product is gone from Magento or its SKU changed. Values of store
views go in one request per view after the admin values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from pim_hub.drivers.base import DeliveryResult, EntityMappingService
from pim_hub.drivers.magento2 import builder
from pim_hub.drivers.magento2.akeneo_media import AkeneoMedia
from pim_hub.drivers.magento2.builder import ProductPayload, Resolved
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.configurables import Configurables
from pim_hub.drivers.magento2.deletes import delete_product
from pim_hub.drivers.magento2.errors import MagentoError, NotFound, UrlKeyConflict
from pim_hub.drivers.magento2.images import sync_images
from pim_hub.drivers.magento2.keys import (
    M_LINKED,
    M_MODEL,
    M_MODEL_ROOT,
    M_MODEL_VARIANT,
    M_PRODUCT,
)
from pim_hub.drivers.magento2.lookups import CategoryIds, split_ref
from pim_hub.drivers.magento2.options import OptionCatalogue
from pim_hub.drivers.magento2.references import References
from pim_hub.schemas.events import Job

#: Akeneo attribute types that cannot be an axis of a family variant (axes are simple
#: selects, reference data simple selects, metrics and booleans).
NEVER_AXES = frozenset(
    {
        builder.IDENTIFIER,
        builder.TEXT,
        builder.TEXTAREA,
        builder.NUMBER,
        builder.DATE,
        builder.MULTI,
        builder.PRICE,
        builder.IMAGE,
        "pim_catalog_file",
        "pim_reference_data_multiselect",
    }
)


class Products:
    """Builds and writes products and root product models (configurables)."""

    def __init__(
        self,
        refs: References,
        opts: OptionCatalogue,
        category_ids: CategoryIds,
        configurables: Configurables,
    ) -> None:
        self._refs = refs
        self._opts = opts
        self._category_ids = category_ids
        self._configurables = configurables
        #: where images come from; None when the integration configures no `media`
        self.media: AkeneoMedia | None = None

    async def payload(
        self,
        state: dict[str, Any],
        api: MagentoClient,
        mapping: EntityMappingService,
        changes: Sequence[Any] | None,
        type_id: str,
    ) -> ProductPayload:
        """The payload of one entity; raises the error that keeps it from being built."""
        [payload] = await self.payloads([(state, type_id)], api, mapping, changes)
        if isinstance(payload, MagentoError):
            raise payload
        return payload

    async def payloads(
        self,
        entities: Sequence[tuple[dict[str, Any], str]],
        api: MagentoClient,
        mapping: EntityMappingService,
        changes: Sequence[Any] | None = None,
    ) -> list[ProductPayload | MagentoError]:
        """Payloads of (state, type_id) entities, or the error of each that cannot be built.

        Their option and category ids are resolved together: one query per kind of reference.
        """
        config = api.config
        out: list[ProductPayload | MagentoError | None] = [None] * len(entities)
        learned = await self._refs.learned([state for state, _ in entities], api, mapping)
        refs: dict[int, builder.Refs] = {}
        for index, (state, _) in enumerate(entities):
            try:
                refs[index] = builder.references(state, config, learned)
            except MagentoError as exc:
                out[index] = exc
        option_refs = {o for r in refs.values() for o in r.options}
        option_ids, option_errors = await self._opts.resolve(option_refs, api, mapping)
        for index, r in refs.items():
            failed = sorted({o.magento for o in r.options} & option_errors.keys())
            if failed:
                out[index] = option_errors[failed[0]]
        wanted = {c for i, r in refs.items() if out[i] is None for c in r.categories}
        category_ids = await self._category_ids.mapped(wanted, api, mapping)
        resolved = Resolved(option_ids=option_ids, category_ids=category_ids)
        for index, (state, type_id) in enumerate(entities):
            if out[index] is not None:
                continue
            try:
                self._category_ids.check(refs[index].categories, category_ids, config)
                out[index] = builder.build_product(
                    state, config, learned, resolved, type_id=type_id, changes=changes
                )
            except MagentoError as exc:
                out[index] = exc
        return cast(list[ProductPayload | MagentoError], out)  # every entry is set now

    async def _save(
        self, api: MagentoClient, body: dict[str, Any], store: str, create: bool
    ) -> dict[str, Any]:
        sku = body["sku"]
        if create:
            result = await api.call("POST", "/V1/products", {"product": body}, store=store)
        else:
            result = await api.call("PUT", f"/V1/products/{sku}", {"product": body}, store=store)
        return cast(dict[str, Any], result)

    async def _create(self, api: MagentoClient, payload: ProductPayload) -> dict[str, Any]:
        """POST the full admin payload (Magento's POST upserts by SKU)."""
        try:
            return await self._save(api, payload.admin, "all", True)
        except UrlKeyConflict as exc:
            name = str(payload.admin.get("name") or payload.sku)
            if api.config.url_key_conflict != "suffix":
                raise UrlKeyConflict(
                    f"URL key {builder.slugify(name)!r} (from the name) is already used by another "
                    f"product; rename one of them or set url_key_conflict='suffix'",
                    status=exc.status,
                    response=exc.response,
                ) from exc
            body = dict(payload.admin)
            body["custom_attributes"] = [
                *[a for a in body.get("custom_attributes", []) if a["attribute_code"] != "url_key"],
                {"attribute_code": "url_key", "value": builder.slugify(f"{name}-{payload.sku}")},
            ]
            return await self._save(api, body, "all", True)

    async def _upsert(
        self,
        job: Job,
        state: dict[str, Any],
        api: MagentoClient,
        mapping: EntityMappingService,
        map_type: str,
        map_key: str,
        type_id: str,
    ) -> tuple[ProductPayload, int | None, bool]:
        """Create (full payload) or update (changed fields) one product; returns its id and
        whether it was created (sent whole).

        The id is None when the changes touch no mapped field (nothing was sent).
        """
        mapped = await mapping.get(map_type, map_key)
        create = job.mutation.operation == "create" or mapped is None
        payload = await self.payload(
            state, api, mapping, None if create else job.mutation.changes, type_id
        )
        if not create and mapped is not None and split_ref(mapped)[1] != payload.sku:
            create = True  # the identifier changed: the new SKU is a new Magento product
            payload = await self.payload(state, api, mapping, None, type_id)
        saved: dict[str, Any] | None
        if create:
            saved = await self._create(api, payload)
        elif builder.is_empty_update(payload) and mapped is not None:
            return payload, None, False  # only unmapped attributes changed: nothing to send
        else:
            try:
                saved = await self._save(api, payload.admin, "all", False)
            except NotFound:
                saved = None
            if saved is None or (mapped is not None and int(saved["id"]) != split_ref(mapped)[0]):
                # Gone from Magento (404, or PUT created a new product from a partial body):
                # send everything so the product is whole again.
                create = True
                payload = await self.payload(state, api, mapping, None, type_id)
                saved = await self._create(api, payload)
        product_id = int(saved["id"])
        if mapped is None or split_ref(mapped) != (product_id, payload.sku):
            await mapping.put(map_type, map_key, f"{product_id}:{payload.sku}")
            self._refs.wrote_mappings()
        for view, body in sorted(payload.stores.items()):
            await self._save(api, body, view, False)
        if payload.images:
            await sync_images(payload.sku, payload.images, self.media, api, mapping)
        return payload, product_id, create

    def _may_move(self, job: Job, state: dict[str, Any], api: MagentoClient) -> bool:
        """Whether an update may move a variant within or out of its configurable: a forced
        replay, a new parent or family, or a changed value of an attribute that may be an axis
        of its family variant (any type an axis can have, or a type not known).

        Attaching a variant reads its configurable's options and posts the link, three
        requests or more: a price, stock or status change of an attached variant skips it.
        """
        if job.mode == "replay-force":
            return True
        config = api.config
        values = state.get("values") or {}
        learned = self._refs.types
        for change in job.mutation.changes:
            if change.field in ("parent", "family"):
                return True
            if change.field != "values":
                continue
            code = change.attribute
            if code is None:
                return True
            rule = next((r for r in config.attributes if r.akeneo == code), None)
            kind = builder.known_type(code, values.get(code) or [], config, rule, learned)
            if kind not in NEVER_AXES:
                return True
        return False

    async def upsert_product(
        self, job: Job, state: dict[str, Any], api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
        """Create or update a product; a variant is then attached to its configurable."""
        payload, product_id, created = await self._upsert(
            job, state, api, mapping, M_PRODUCT, job.mutation.entity_key, "simple"
        )
        if product_id is None:
            return DeliveryResult.skipped("no mapped field changed", target_ref=payload.sku)
        parent = state.get("parent")
        if parent and (
            created
            or self._may_move(job, state, api)
            or await mapping.get(M_LINKED, payload.sku) != str(parent)
        ):
            await self._configurables.link_child(state, str(parent), payload.sku, api, mapping)
        return DeliveryResult.delivered(target_ref=f"{product_id}:{payload.sku}")

    async def product_model(
        self, job: Job, state: dict[str, Any], api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
        """A root model becomes a configurable product; a sub-model only records its root."""
        code = state.get("code")
        if not isinstance(code, str):
            return DeliveryResult.permanent("a product model needs a code", kind="bad_input")
        parent = state.get("parent")
        if parent:
            # Magento has one level of variants: sub-models only record their root; their
            # values reach Magento through the variant products, which carry them.
            root = await mapping.get(M_MODEL_ROOT, str(parent)) or str(parent)
            await mapping.put(M_MODEL_ROOT, code, root)
            self._refs.wrote_mappings()
            return DeliveryResult.skipped(f"sub-model of {root}: variants link to the root")
        if job.mutation.operation == "delete":
            return await delete_product(state, code, api, mapping, M_MODEL)
        with self._refs.delivering(M_MODEL, [code]):
            return await self._root_model(job, state, code, api, mapping)

    async def _root_model(
        self,
        job: Job,
        state: dict[str, Any],
        code: str,
        api: MagentoClient,
        mapping: EntityMappingService,
    ) -> DeliveryResult:
        await mapping.put_many(M_MODEL_ROOT, {code: code})
        self._refs.wrote_mappings()
        if state.get("family_variant"):
            await mapping.put(M_MODEL_VARIANT, code, str(state["family_variant"]))
        payload, product_id, _ = await self._upsert(
            job, state, api, mapping, M_MODEL, code, "configurable"
        )
        if product_id is None:
            return DeliveryResult.skipped("no mapped field changed", target_ref=payload.sku)
        return DeliveryResult.delivered(target_ref=f"{product_id}:{payload.sku}")
