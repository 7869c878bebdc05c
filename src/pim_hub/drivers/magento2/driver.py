"""The Magento 2 driver: products, configurables, categories and options over the REST API.

How the driver learns Akeneo attribute types (values in a state may not carry them), by
precedence: the integration's `attribute_types`, a rule's `type`, `attribute_type` in the
values, types recorded from `attribute` mutations in the mapping service (entity type
`akeneo_attribute_type`), then the shape of the data (see builder.resolve_type).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import orjson
from pydantic import BaseModel

from pim_hub.drivers.base import DeliveryResult, Driver, EntityMappingService, IntegrationContext
from pim_hub.drivers.magento2 import builder
from pim_hub.drivers.magento2.akeneo_media import AkeneoMedia
from pim_hub.drivers.magento2.builder import ImageRef, OptionRef, ProductPayload, Resolved
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.config import Magento2Config
from pim_hub.drivers.magento2.errors import (
    MagentoError,
    MappingError,
    MissingReference,
    NotFound,
    PermanentError,
    RetryableError,
    UrlKeyConflict,
)
from pim_hub.drivers.magento2.keys import (
    M_ATTRIBUTE_ID,
    M_AXES,
    M_CATEGORY,
    M_MEDIA,
    M_MODEL,
    M_MODEL_ROOT,
    M_MODEL_VARIANT,
    M_PRODUCT,
    M_TYPE,
)
from pim_hub.drivers.magento2.options import OptionCatalogue
from pim_hub.drivers.magento2.references import References
from pim_hub.schemas.events import Job

MSG_ALREADY_ATTACHED = "The product is already attached."
REFERENCE_POLL_S = 0.05
#: how many characters of comma-separated SKUs one search by SKU carries at most
SEARCH_SKUS_CHARS = 2000
UNKNOWN_TYPE_RECHECK_S = 5.0
# Async bulk operation status codes (Magento\AsynchronousOperations).
OP_COMPLETE, OP_RETRIABLE, OP_FAILED, OP_OPEN, OP_REJECTED = 1, 2, 3, 4, 5


def _result(exc: MagentoError) -> DeliveryResult:
    if exc.retryable:
        return DeliveryResult.retry(
            str(exc),
            retry_after=exc.retry_after,
            status=exc.status,
            response=exc.response,
            kind=exc.kind,
        )
    return DeliveryResult.permanent(
        str(exc), status=exc.status, response=exc.response, kind=exc.kind
    )


def _option_order(value: str) -> tuple[int, str]:
    """Option ids in numeric order (the order they were created in)."""
    return (int(value), value) if value.isdigit() else (0, value)


def _split_ref(value: str) -> tuple[int, str]:
    ident, _, sku = value.partition(":")
    return int(ident), sku


@dataclass
class _Prepared:
    """A product (or root product model) job turned into payloads, ready for the bulk API."""

    job: Job
    map_type: str  # M_PRODUCT or M_MODEL
    map_key: str
    payload: ProductPayload


class Magento2Driver(Driver):
    """Delivers Akeneo products, product models, categories and options to Magento 2."""

    name: ClassVar[str] = "Magento 2"
    key: ClassVar[str] = "magento2"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Magento 2 / Adobe Commerce REST API (sync or async bulk)"
    supported_entity_types: ClassVar[frozenset[str]] = frozenset(
        {
            "product",
            "product_model",
            "category",
            "attribute",
            "attribute_option",
            "family",
            "family_variant",
        }
    )
    config_model: ClassVar[type[BaseModel]] = Magento2Config

    def __init__(self) -> None:
        self._client: MagentoClient | None = None
        self._media: AkeneoMedia | None = None
        self._refs = References()
        self._opts = OptionCatalogue()
        self._attribute_ids: dict[str, int] = {}
        self._parent_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ lifecycle
    async def open(self, context: IntegrationContext) -> None:
        """Create the REST client of one integration."""
        config = self._config(context)
        self._client = MagentoClient(config, context.http, context.metrics)
        if config.media is not None:
            self._media = AkeneoMedia(config.media, context.http, config.timeout_s)

    @staticmethod
    def _config(context: IntegrationContext) -> Magento2Config:
        config = context.config
        if not isinstance(config, Magento2Config):
            config = Magento2Config.model_validate(config.model_dump())
        return config

    def _api(self, context: IntegrationContext) -> MagentoClient:
        if self._client is None:
            self._client = MagentoClient(self._config(context), context.http, context.metrics)
            if self._client.config.media is not None:
                cfg = self._client.config
                assert cfg.media is not None
                self._media = AkeneoMedia(cfg.media, context.http, cfg.timeout_s)
        return self._client

    # ------------------------------------------------------------------ entry points
    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Deliver one job; Magento's answers become delivered / retry / permanent results."""
        api = self._api(context)
        try:
            return await self._handle(job, api, context.mapping)
        except MagentoError as exc:
            context.logger.info(
                "magento delivery failed",
                extra={
                    "job_id": job.job_id,
                    "entity_key": job.mutation.entity_key,
                    "error_kind": exc.kind,
                },
            )
            return _result(exc)

    def wants_batches(self, context: IntegrationContext) -> bool:
        """Batches only pay with the async bulk API; sync mode is faster job by job.

        The dispatcher asks this per integration: True → `handle_batch` gets a batch at a
        time; False → `handle` is called for each job, concurrently up to the limit.
        """
        return self._config(context).bulk == "async"

    async def handle_batch(
        self, jobs: list[Job], context: IntegrationContext
    ) -> list[DeliveryResult]:
        """Deliver several jobs; with `bulk: async`, product creations go through the bulk API.

        Creations carry full payloads, which is what the bulk API takes; an update's payload
        holds only its changed fields and goes alone (usually one small request). Variants
        are created in bulk, then attached to their configurable, a configurable at a time.
        Everything else is delivered job by job, concurrently across entities; jobs of one
        entity keep their order (an entity with several jobs in the batch goes job by job).
        """
        api = self._api(context)
        config = api.config
        if config.bulk != "async":
            return [await self.handle(job, context) for job in jobs]
        mapping = context.mapping
        results: dict[int, DeliveryResult] = {}
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.mutation.entity_key] = counts.get(job.mutation.entity_key, 0) + 1
        states: dict[int, dict[str, Any]] = {}
        candidates: list[tuple[int, dict[str, Any], bool]] = []
        for index, job in enumerate(jobs):
            m = job.mutation
            if (
                m.entity_type not in ("product", "product_model")
                or m.operation != "create"
                or counts[m.entity_key] > 1
                or not m.state
            ):
                continue
            try:
                state = orjson.loads(m.state)
            except orjson.JSONDecodeError:
                continue  # the one-by-one path reports it
            if not isinstance(state, dict):
                continue
            model = m.entity_type == "product_model"
            if model and (state.get("parent") or not isinstance(state.get("code"), str)):
                continue  # sub-models only record their root: the one-by-one path
            candidates.append((index, state, model))

        # The batch's references (types, options, categories) are looked up together: one
        # query per kind for the batch instead of one per product.
        payloads = await self._product_payloads(
            [(state, "configurable" if model else "simple") for _, state, model in candidates],
            api,
            mapping,
        )
        prepared: list[tuple[int, _Prepared]] = []
        roots: dict[str, str] = {}
        family_variants: dict[str, str] = {}
        for (index, state, model), payload in zip(candidates, payloads, strict=True):
            if isinstance(payload, MagentoError):
                results[index] = _result(payload)
                continue
            if payload.images:
                continue
            states[index] = state
            if not model:
                prepared.append(
                    (
                        index,
                        _Prepared(jobs[index], M_PRODUCT, jobs[index].mutation.entity_key, payload),
                    )
                )
                continue
            code = str(state["code"])
            roots[code] = code
            if state.get("family_variant"):
                family_variants[code] = str(state["family_variant"])
            prepared.append((index, _Prepared(jobs[index], M_MODEL, code, payload)))
        # What the one-by-one path records before its upsert: variants find their root.
        if roots:
            await mapping.put_many(M_MODEL_ROOT, roots)
            self._refs.wrote_mappings()
        if family_variants:
            await mapping.put_many(M_MODEL_VARIANT, family_variants)
        if prepared:
            try:
                outcome = await self._bulk_upsert([p for _, p in prepared], api, mapping)
            except MagentoError as exc:
                outcome = [_result(exc)] * len(prepared)
            for (index, _), result in zip(prepared, outcome, strict=True):
                results[index] = result

        # Created variants are attached to their configurables, all parents of the batch at once.
        families: dict[str, list[tuple[int, str]]] = {}
        for index, p in prepared:
            parent = states[index].get("parent")
            if p.map_type == M_PRODUCT and parent and results[index].outcome == "delivered":
                families.setdefault(str(parent), []).append((index, p.payload.sku))

        async def link() -> None:
            if not families:
                return
            children = {
                parent: [(states[index], sku) for index, sku in members]
                for parent, members in families.items()
            }
            errors = await self._link_families(children, api, mapping, bulk=True)
            for parent, members in families.items():
                for (index, _), error in zip(members, errors[parent], strict=True):
                    if error is not None:
                        results[index] = _result(error)

        async def one_by_one(indexes: list[int]) -> None:
            for index in indexes:
                results[index] = await self.handle(jobs[index], context)

        rest: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            if index not in results:
                rest.setdefault(job.mutation.entity_key, []).append(index)
        await asyncio.gather(link(), *(one_by_one(ixs) for ixs in rest.values()))
        return [results[i] for i in range(len(jobs))]

    async def _handle(
        self, job: Job, api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
        m = job.mutation
        if m.state is None:
            return DeliveryResult.permanent("the mutation carries no state", kind="bad_input")
        try:
            state = orjson.loads(m.state)
        except orjson.JSONDecodeError as exc:
            return DeliveryResult.permanent(f"the state is not JSON: {exc}", kind="bad_input")
        if not isinstance(state, dict):
            return DeliveryResult.permanent("the state is not a JSON object", kind="bad_input")
        etype = m.entity_type
        if etype == "product":
            if m.operation == "delete":
                return await self._delete_product(state, m.entity_key, api, mapping)
            return await self._upsert_product(job, state, api, mapping)
        if etype == "product_model":
            return await self._product_model(job, state, api, mapping)
        if etype == "category":
            return await self._category(job, state, api, mapping)
        if etype == "attribute":
            return await self._attribute(job, state, mapping)
        if etype == "attribute_option":
            return await self._attribute_option(job, state, api, mapping)
        if etype == "family_variant":
            return await self._family_variant(job, state, mapping)
        if etype == "family":
            set_id = api.config.attribute_sets.get(str(state.get("code")))
            if set_id is None:
                return DeliveryResult.skipped(
                    f"family {state.get('code')!r} has no attribute set mapping; its products "
                    f"use attribute set {api.config.default_attribute_set_id}"
                )
            return DeliveryResult.skipped(
                f"families map to attribute set {set_id} by configuration"
            )
        return DeliveryResult.skipped(f"the Magento driver does not handle {etype!r}")

    # ------------------------------------------------------------------ attribute types
    async def _attribute(
        self, job: Job, state: dict[str, Any], mapping: EntityMappingService
    ) -> DeliveryResult:
        code, type_ = state.get("code"), state.get("type")
        if not isinstance(code, str) or not isinstance(type_, str):
            return DeliveryResult.permanent(
                "an attribute needs a code and a type", kind="bad_input"
            )
        if job.mutation.operation == "delete":
            return DeliveryResult.skipped("attribute deletions do not reach Magento")
        await mapping.put(M_TYPE, code, type_)
        self._refs.types[code] = type_
        return DeliveryResult.delivered(target_ref=f"type:{code}")

    async def _family_variant(
        self, job: Job, state: dict[str, Any], mapping: EntityMappingService
    ) -> DeliveryResult:
        code = state.get("code")
        if not isinstance(code, str):
            return DeliveryResult.permanent("a family variant needs a code", kind="bad_input")
        if job.mutation.operation == "delete":
            return DeliveryResult.skipped("family variant deletions do not reach Magento")
        sets = sorted(state.get("variant_attribute_sets") or [], key=lambda s: s.get("level", 0))
        axes = [a for s in sets for a in s.get("axes") or []]
        await mapping.put(M_AXES, code, ",".join(axes))
        return DeliveryResult.delivered(target_ref=f"axes:{code}")

    async def _attribute_option(
        self, job: Job, state: dict[str, Any], api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
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
        refs = {OptionRef(t, attribute, code) for t in targets}
        ids = await self._opts.ensure(refs, api, mapping, labels=state.get("labels") or {})
        return DeliveryResult.delivered(target_ref=",".join(sorted(ids.values())))

    # ------------------------------------------------------------------ categories
    async def _category_ids(
        self, codes: set[str], api: MagentoClient, mapping: EntityMappingService
    ) -> dict[str, int]:
        found = await self._mapped_categories(codes, api, mapping)
        self._check_categories(codes, found, api.config)
        return found

    async def _mapped_categories(
        self, codes: set[str], api: MagentoClient, mapping: EntityMappingService
    ) -> dict[str, int]:
        """Magento ids of the categories mapped so far (missing ones waited for a moment)."""
        if not codes:
            return {}
        wait = api.config.reference_wait_s if api.config.missing_reference == "retry" else 0.0
        mapped = await self._refs.await_mapped(mapping, M_CATEGORY, sorted(codes), wait)
        return {k: int(v) for k, v in mapped.items()}

    @staticmethod
    def _check_categories(codes: set[str], found: dict[str, int], config: Magento2Config) -> None:
        missing = sorted(codes - set(found))
        if missing and config.missing_reference == "retry":
            raise MissingReference(f"categories not synced to Magento yet: {', '.join(missing)}")

    async def _find_category(
        self, api: MagentoClient, parent_id: int, code: str, name: str
    ) -> int | None:
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

    async def _category(
        self, job: Job, state: dict[str, Any], api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
        config = api.config
        code = state.get("code")
        if not isinstance(code, str):
            return DeliveryResult.permanent("a category needs a code", kind="bad_input")
        mapped = await mapping.get(M_CATEGORY, code)
        if job.mutation.operation == "delete":
            if mapped is None or state.get("parent") is None:
                return DeliveryResult.skipped("category never delivered (or a tree root)")
            try:
                await api.call("DELETE", f"/V1/categories/{mapped}")
            except NotFound:
                pass  # already gone: the deletion is done either way
            return DeliveryResult.delivered(target_ref=mapped)
        parent = state.get("parent")
        if parent is None:
            # A tree root maps to an existing Magento root; Magento's root is never renamed.
            root_id = config.category_roots.get(code, config.default_root_category_id)
            await mapping.put(M_CATEGORY, code, str(root_id))
            self._refs.wrote_mappings()
            return DeliveryResult.delivered(target_ref=str(root_id))
        parent_id = (await self._category_ids({parent}, api, mapping)).get(parent)
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
            category_id = await self._find_category(api, parent_id, code, name)
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
    async def _product_payload(
        self,
        state: dict[str, Any],
        api: MagentoClient,
        mapping: EntityMappingService,
        changes: Sequence[Any] | None,
        type_id: str,
    ) -> ProductPayload:
        [payload] = await self._product_payloads([(state, type_id)], api, mapping, changes)
        if isinstance(payload, MagentoError):
            raise payload
        return payload

    async def _product_payloads(
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
        category_ids = await self._mapped_categories(wanted, api, mapping)
        resolved = Resolved(option_ids=option_ids, category_ids=category_ids)
        for index, (state, type_id) in enumerate(entities):
            if out[index] is not None:
                continue
            try:
                self._check_categories(refs[index].categories, category_ids, config)
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
    ) -> tuple[ProductPayload, int | None]:
        """Create (full payload) or update (changed fields) one product; returns its id.

        The id is None when the changes touch no mapped field (nothing was sent).
        """
        mapped = await mapping.get(map_type, map_key)
        create = job.mutation.operation == "create" or mapped is None
        payload = await self._product_payload(
            state, api, mapping, None if create else job.mutation.changes, type_id
        )
        if not create and mapped is not None and _split_ref(mapped)[1] != payload.sku:
            create = True  # the identifier changed: the new SKU is a new Magento product
            payload = await self._product_payload(state, api, mapping, None, type_id)
        saved: dict[str, Any] | None
        if create:
            saved = await self._create(api, payload)
        elif builder.is_empty_update(payload) and mapped is not None:
            return payload, None  # only unmapped attributes changed: nothing to send
        else:
            try:
                saved = await self._save(api, payload.admin, "all", False)
            except NotFound:
                saved = None
            if saved is None or (mapped is not None and int(saved["id"]) != _split_ref(mapped)[0]):
                # Gone from Magento (404, or PUT created a new product from a partial body):
                # send everything so the product is whole again.
                create = True
                payload = await self._product_payload(state, api, mapping, None, type_id)
                saved = await self._create(api, payload)
        product_id = int(saved["id"])
        if mapped is None or _split_ref(mapped) != (product_id, payload.sku):
            await mapping.put(map_type, map_key, f"{product_id}:{payload.sku}")
            self._refs.wrote_mappings()
        for view, body in sorted(payload.stores.items()):
            await self._save(api, body, view, False)
        if payload.images:
            await self._images(payload.sku, payload.images, api, mapping)
        return payload, product_id

    async def _upsert_product(
        self, job: Job, state: dict[str, Any], api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
        payload, product_id = await self._upsert(
            job, state, api, mapping, M_PRODUCT, job.mutation.entity_key, "simple"
        )
        if product_id is None:
            return DeliveryResult.skipped("no mapped field changed", target_ref=payload.sku)
        parent = state.get("parent")
        if parent:
            await self._link_child(state, str(parent), payload.sku, api, mapping)
        return DeliveryResult.delivered(target_ref=f"{product_id}:{payload.sku}")

    async def _delete_product(
        self,
        state: dict[str, Any],
        entity_key: str,
        api: MagentoClient,
        mapping: EntityMappingService,
        map_type: str = M_PRODUCT,
    ) -> DeliveryResult:
        mapped = await mapping.get(map_type, entity_key)
        try:
            sku = _split_ref(mapped)[1] if mapped else builder.identifier_of(state, api.config)
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

    # ------------------------------------------------------------------ images
    async def _images(
        self, sku: str, images: list[ImageRef], api: MagentoClient, mapping: EntityMappingService
    ) -> None:
        if self._media is None:
            raise MappingError("image attributes are mapped but the `media` config is missing")
        keys = [f"{sku}|{img.attribute}" for img in images]
        known = await mapping.get_many(M_MEDIA, keys)
        listed: list[dict[str, Any]] | None = None
        for img, key in zip(images, keys, strict=True):
            content, mime = await self._media.download(img.file_code)
            digest = hashlib.sha256(content).hexdigest()
            old = known.get(key)
            if old is not None and old.split(":", 1)[0] == digest:
                continue  # this content is already in the gallery
            if listed is None:
                listed = await api.call("GET", f"/V1/products/{sku}/media", store="all") or []
            stem = digest[:16]
            entry_id = next((int(e["id"]) for e in listed if stem in str(e.get("file", ""))), None)
            if entry_id is None:
                ext = mime.split("/", 1)[1].replace("jpeg", "jpg")
                entry = {
                    "media_type": "image",
                    "label": "",
                    "position": img.position,
                    "disabled": False,
                    "types": list(img.roles),
                    "content": {
                        "base64_encoded_data": base64.b64encode(content).decode(),
                        "type": mime,
                        "name": f"{stem}.{ext}",
                    },
                }
                created = await api.call(
                    "POST", f"/V1/products/{sku}/media", {"entry": entry}, store="all"
                )
                entry_id = int(created)
            if old is not None:
                old_id = int(old.split(":", 1)[1])
                if old_id != entry_id:
                    try:
                        await api.call("DELETE", f"/V1/products/{sku}/media/{old_id}", store="all")
                    except NotFound:
                        pass  # removed by hand already
            await mapping.put(M_MEDIA, key, f"{digest}:{entry_id}")

    # ------------------------------------------------------------------ configurables
    async def _product_model(
        self, job: Job, state: dict[str, Any], api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
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
            return await self._delete_product(state, code, api, mapping, M_MODEL)
        await mapping.put_many(M_MODEL_ROOT, {code: code})
        self._refs.wrote_mappings()
        if state.get("family_variant"):
            await mapping.put(M_MODEL_VARIANT, code, str(state["family_variant"]))
        payload, product_id = await self._upsert(
            job, state, api, mapping, M_MODEL, code, "configurable"
        )
        if product_id is None:
            return DeliveryResult.skipped("no mapped field changed", target_ref=payload.sku)
        return DeliveryResult.delivered(target_ref=f"{product_id}:{payload.sku}")

    async def _attribute_id(
        self, api: MagentoClient, mapping: EntityMappingService, code: str
    ) -> int:
        if code not in self._attribute_ids:
            known = await mapping.get(M_ATTRIBUTE_ID, code)
            if known is None:
                found = await api.call("GET", f"/V1/products/attributes/{code}", store="all")
                known = str(found["attribute_id"])
                await mapping.put(M_ATTRIBUTE_ID, code, known)
            self._attribute_ids[code] = int(known)
        return self._attribute_ids[code]

    async def _link_child(
        self,
        state: dict[str, Any],
        parent: str,
        child_sku: str,
        api: MagentoClient,
        mapping: EntityMappingService,
    ) -> None:
        errors = await self._link_families({parent: [(state, child_sku)]}, api, mapping, bulk=False)
        [error] = errors[parent]
        if error is not None:
            raise error

    async def _link_families(
        self,
        families: dict[str, list[tuple[dict[str, Any], str]]],
        api: MagentoClient,
        mapping: EntityMappingService,
        *,
        bulk: bool,
    ) -> dict[str, list[MagentoError | None]]:
        """Attach variants (state, sku) to the configurables of their parent models.

        Every configurable's options are read and completed once for all its children, and
        the look-ups and requests serve all parents together (with `bulk`, the writes go
        through the async bulk API: one request for all parents). The error of each child
        (None: attached) comes back per parent, in order.
        """
        config = api.config
        wait = config.reference_wait_s
        out: dict[str, list[MagentoError | None]] = {
            parent: [None] * len(kids) for parent, kids in families.items()
        }

        def fail(parent: str, exc: MagentoError, only: Sequence[int] | None = None) -> None:
            for index in range(len(families[parent])) if only is None else only:
                out[parent][index] = exc

        parents = sorted(families)
        roots = await self._refs.await_mapped(mapping, M_MODEL_ROOT, parents, wait)
        root_codes = sorted(set(roots.values()))
        models = (
            await self._refs.await_mapped(mapping, M_MODEL, root_codes, wait) if root_codes else {}
        )
        variants = await mapping.get_many(M_MODEL_VARIANT, root_codes) if root_codes else {}
        unknown_axes = sorted(
            {v for v in variants.values() if not config.family_variant_axes.get(v)}
        )
        learned_axes = await mapping.get_many(M_AXES, unknown_axes) if unknown_axes else {}
        plans: dict[str, tuple[str, list[Any], dict[int, set[OptionRef]]]] = {}
        for parent in parents:
            root = roots.get(parent)
            model = models.get(root) if root else None
            if root is None or model is None:
                fail(
                    parent,
                    MissingReference(f"parent product model {parent!r} not synced to Magento yet"),
                )
                continue
            variant = variants.get(root)
            axes = config.family_variant_axes.get(variant or "") or []
            if not axes and variant:
                axes = [a for a in (learned_axes.get(variant) or "").split(",") if a]
            if not axes:
                fail(
                    parent,
                    MissingReference(f"axes of family variant {variant!r} are not known yet"),
                )
                continue
            try:
                rules = builder.axis_rules(axes, config)
            except MagentoError as exc:
                fail(parent, exc)
                continue
            child_refs: dict[int, set[OptionRef]] = {}
            for index, (state, child_sku) in enumerate(families[parent]):
                values = state.get("values") or {}
                refs = set()
                for rule in rules:
                    data = builder.pick(values.get(rule.akeneo) or [], None, None)
                    if not isinstance(data, str) or not data:
                        out[parent][index] = MappingError(
                            f"variant {child_sku} has no value for axis {rule.akeneo!r}"
                        )
                        break
                    refs.add(OptionRef(rule.magento, rule.akeneo, data))
                else:
                    child_refs[index] = refs
            if child_refs:
                plans[parent] = (_split_ref(model)[1], rules, child_refs)
        if not plans:
            return out
        all_refs = {
            r for _, _, child_refs in plans.values() for refs in child_refs.values() for r in refs
        }
        ids, option_errors = await self._opts.resolve(all_refs, api, mapping)
        wanted: dict[str, dict[str, set[str]]] = {}  # parent sku -> magento attribute -> ids
        for parent, (parent_sku, _, child_refs) in list(plans.items()):
            failed = sorted(
                {r.magento for refs in child_refs.values() for r in refs} & option_errors.keys()
            )
            if failed:
                fail(parent, option_errors[failed[0]], list(child_refs))
                del plans[parent]
                continue
            by_attr = wanted.setdefault(parent_sku, {})
            for refs in child_refs.values():
                for r in refs:
                    by_attr.setdefault(r.magento, set()).add(ids[(r.magento, r.code)])
        rules_of = {plans[p][0]: plans[p][1] for p in plans}
        # Children of one configurable arrive concurrently: one option update at a time
        # here; other processes are caught by the read-back and retried.
        async with contextlib.AsyncExitStack() as stack:
            for sku in sorted(rules_of):
                await stack.enter_async_context(self._parent_locks.setdefault(sku, asyncio.Lock()))
            failed_skus = await self._ensure_configurable_options(
                api, mapping, rules_of, wanted, bulk=bulk
            )
        attach: list[tuple[str, int]] = []
        for parent, (parent_sku, _, child_refs) in plans.items():
            if parent_sku in failed_skus:
                fail(parent, failed_skus[parent_sku], list(child_refs))
            else:
                attach.extend((parent, index) for index in child_refs)
        outcome = await self._write_each(
            api,
            "POST",
            "/V1/configurable-products/{sku}/child",
            [
                (plans[parent][0], {"childSku": families[parent][index][1]})
                for parent, index in attach
            ],
            bulk=bulk and len(attach) > 1,
        )
        for (parent, index), error in zip(attach, outcome, strict=True):
            if isinstance(error, PermanentError) and MSG_ALREADY_ATTACHED in error.message:
                error = None
            out[parent][index] = error
        return out

    async def _products_by_sku(
        self, api: MagentoClient, skus: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
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

    async def _ensure_configurable_options(
        self,
        api: MagentoClient,
        mapping: EntityMappingService,
        rules_of: dict[str, list[Any]],
        wanted: dict[str, dict[str, set[str]]],
        *,
        bulk: bool,
    ) -> dict[str, MagentoError]:
        """Make each configurable's options include its children's axis values.

        One search reads every configurable's options, the changed ones are written (a PUT
        each, or one bulk request), one more search checks that no concurrent write lost a
        value. Returns the error of each configurable whose options are not complete.
        """
        failed: dict[str, MagentoError] = {}
        skus = sorted(rules_of)
        try:
            found = await self._products_by_sku(api, skus)
        except MagentoError as exc:
            return dict.fromkeys(skus, exc)
        puts: list[tuple[str, dict[str, Any]]] = []
        posts: list[tuple[str, list[dict[str, Any]]]] = []
        attribute_ids: dict[str, int] = {}
        for sku in skus:
            product = found.get(sku)
            if product is None:
                failed[sku] = NotFound(f"configurable product {sku} is not in Magento", status=404)
                continue
            ext = product.get("extension_attributes") or {}
            current = ext.get("configurable_product_options") or []
            by_attr = {str(o.get("attribute_id")): o for o in current}
            changed = False
            options = []
            try:
                for position, rule in enumerate(rules_of[sku]):
                    attribute_id = await self._attribute_id(api, mapping, rule.magento)
                    attribute_ids[rule.magento] = attribute_id
                    existing = by_attr.get(str(attribute_id))
                    values_now = [
                        str(v["value_index"]) for v in (existing or {}).get("values") or []
                    ]
                    new = sorted(wanted[sku][rule.magento] - set(values_now), key=_option_order)
                    if existing is None or new:
                        changed = True
                    options.append(
                        builder.configurable_option(
                            attribute_id, rule.magento, position, [*values_now, *new]
                        )
                    )
            except MagentoError as exc:
                failed[sku] = exc
                continue
            if not changed:
                continue
            if product.get("type_id") == "configurable":
                body = {
                    "sku": sku,
                    "extension_attributes": {"configurable_product_options": options},
                }
                puts.append((sku, {"product": body}))
            else:
                # The first options make the product configurable (a product update would not).
                posts.append((sku, options))
        if not puts and not posts:
            return failed
        written = await self._write_each(
            api, "PUT", "/V1/products/{sku}", puts, bulk=bulk and len(puts) > 1
        )

        async def add_options(sku: str, options: list[dict[str, Any]]) -> MagentoError | None:
            try:
                for option in options:
                    await api.call(
                        "POST",
                        f"/V1/configurable-products/{sku}/options",
                        {"option": option},
                        store="all",
                    )
            except MagentoError as exc:
                return exc
            return None

        added = await asyncio.gather(*(add_options(sku, options) for sku, options in posts))
        checked = []
        for sku, error in [
            *zip([s for s, _ in puts], written, strict=True),
            *zip([s for s, _ in posts], added, strict=True),
        ]:
            if isinstance(error, PermanentError):
                failed[sku] = RetryableError(
                    f"options of {sku} changed meanwhile ({error.message}); trying again",
                    kind="concurrent_update",
                )
            elif error is not None:
                failed[sku] = error
            else:
                checked.append(sku)
        if not checked:
            return failed
        try:
            after = await self._products_by_sku(api, checked)
        except MagentoError as exc:
            failed.update(dict.fromkeys(checked, exc))
            return failed
        for sku in checked:
            ext = (after.get(sku) or {}).get("extension_attributes") or {}
            present = {
                (str(o.get("attribute_id")), str(v["value_index"]))
                for o in ext.get("configurable_product_options") or []
                for v in o.get("values") or []
            }
            lost = sorted(
                v
                for code, values in wanted[sku].items()
                for v in values
                if (str(attribute_ids[code]), v) not in present
            )
            if lost:
                # Another dispatcher wrote its own value list over ours: merge again later.
                failed[sku] = RetryableError(
                    f"options of {sku} lost value {', '.join(lost)} to a concurrent "
                    "update; trying again",
                    kind="concurrent_update",
                )
        return failed

    # ------------------------------------------------------------------ async bulk
    async def _bulk(
        self, api: MagentoClient, store: str, method: str, path: str, items: list[dict[str, Any]]
    ) -> list[tuple[int, str]]:
        """Send items through `/async/bulk<path>`; (status, message) per item."""
        accepted = await api.call(method, path, items, store=store, mode="bulk")
        requested = sorted(accepted.get("request_items") or [], key=lambda r: int(r["id"]))
        out: list[tuple[int, str]] = [(OP_OPEN, "")] * len(items)
        for item in requested:
            if item.get("status") == "rejected":
                out[int(item["id"])] = (OP_REJECTED, str(item.get("error_message") or "rejected"))
        uuid = accepted["bulk_uuid"]
        deadline = time.monotonic() + api.config.bulk_timeout_s
        while True:
            status = await api.call("GET", f"/V1/bulk/{uuid}/status")
            ops = sorted(status.get("operations_list") or [], key=lambda o: int(o["id"]))
            # Operations come back in request order (ids are allocated as items are read).
            for index, op in enumerate(ops[: len(items)]):
                if out[index][0] != OP_REJECTED:
                    out[index] = (int(op["status"]), str(op.get("result_message") or ""))
            if all(s != OP_OPEN for s, _ in out) or time.monotonic() > deadline:
                return out
            await asyncio.sleep(api.config.bulk_poll_interval_s)

    async def _write_each(
        self,
        api: MagentoClient,
        method: str,
        template: str,
        calls: list[tuple[str, dict[str, Any]]],
        *,
        bulk: bool,
    ) -> list[MagentoError | None]:
        """One write of `template` (its `{sku}` filled in) per (sku, body), in the admin scope.

        With `bulk`, all of them go in one async bulk request (the SKU travels in each item).
        Returns the error of each call, None when it succeeded.
        """
        if not calls:
            return []
        if not bulk:

            async def one(sku: str, body: dict[str, Any]) -> MagentoError | None:
                try:
                    await api.call(method, template.replace("{sku}", sku), body, store="all")
                except MagentoError as exc:
                    return exc
                return None

            return list(await asyncio.gather(*(one(sku, body) for sku, body in calls)))
        path = template.replace("{sku}", "bySku")
        try:
            outcome = await self._bulk(
                api, "all", method, path, [{"sku": sku, **body} for sku, body in calls]
            )
        except MagentoError as exc:
            return [exc] * len(calls)
        errors: list[MagentoError | None] = []
        for status, message in outcome:
            if status == OP_COMPLETE:
                errors.append(None)
            elif status in (OP_OPEN, OP_RETRIABLE):
                reason = message or "the bulk operation did not finish in time"
                errors.append(RetryableError(f"bulk: {reason}", kind="bulk_retriable"))
            else:
                errors.append(PermanentError(message, kind="bulk_failed"))
        return errors

    async def _bulk_upsert(
        self, prepared: list[_Prepared], api: MagentoClient, mapping: EntityMappingService
    ) -> list[DeliveryResult]:
        """Full payloads through the bulk API: admin values first, then each store view."""
        results: list[DeliveryResult | None] = [None] * len(prepared)

        def settle(index: int, status: int, message: str) -> None:
            if status == OP_COMPLETE:
                return
            if status in (OP_OPEN, OP_RETRIABLE):
                reason = message or "the bulk operation did not finish in time"
                results[index] = DeliveryResult.retry(f"bulk: {reason}", kind="bulk_retriable")
            else:
                results[index] = DeliveryResult.permanent(f"bulk: {message}", kind="bulk_failed")

        admin = await self._bulk(
            api, "all", "POST", "/V1/products", [{"product": p.payload.admin} for p in prepared]
        )
        for index, (status, message) in enumerate(admin):
            settle(index, status, message)
        views = sorted({v for p in prepared for v in p.payload.stores})

        async def view_bulk(view: str) -> None:
            members = [
                i for i, p in enumerate(prepared) if results[i] is None and view in p.payload.stores
            ]
            if not members:
                return
            outcome = await self._bulk(
                api,
                view,
                "POST",
                "/V1/products",
                [{"product": prepared[i].payload.stores[view]} for i in members],
            )
            for index, (status, message) in zip(members, outcome, strict=True):
                settle(index, status, message)

        # The products exist now: their store views are independent of each other. A failure
        # in one view settles the job as failed whatever the others did (it is sent again).
        await asyncio.gather(*(view_bulk(v) for v in views))
        done = [i for i, r in enumerate(results) if r is None]
        if done:
            rows = await self._products_by_sku(api, [prepared[i].payload.sku for i in done])
            ids = {sku: int(row["id"]) for sku, row in rows.items()}
            pairs: dict[str, dict[str, str]] = {}
            for i in done:
                p = prepared[i]
                if p.payload.sku in ids:
                    ref = f"{ids[p.payload.sku]}:{p.payload.sku}"
                    pairs.setdefault(p.map_type, {})[p.map_key] = ref
            for map_type, refs in sorted(pairs.items()):
                await mapping.put_many(map_type, refs)
            self._refs.wrote_mappings()
            for i in done:
                results[i] = DeliveryResult.delivered(target_ref=prepared[i].payload.sku)
        return [r if r is not None else DeliveryResult.retry("bulk: no outcome") for r in results]


__all__ = ["Magento2Driver", "RetryableError"]
