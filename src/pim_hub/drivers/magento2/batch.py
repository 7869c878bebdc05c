"""Batches in `bulk: async` mode: product creations through Magento's async bulk API.

Creations carry full payloads, which is what the bulk API takes; an update's payload holds
only its changed fields and goes alone (usually one small request). Variants are created in
bulk, then attached to their configurables, all parents of the batch at once. Everything
else is delivered job by job, concurrently across entities; jobs of one entity keep their
order (an entity with several jobs in the batch goes job by job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pim_hub.drivers.base import DeliveryResult, EntityMappingService
from pim_hub.drivers.magento2.builder import ProductPayload
from pim_hub.drivers.magento2.bulk import OP_COMPLETE, OP_OPEN, OP_RETRIABLE, run_bulk
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.configurables import Configurables
from pim_hub.drivers.magento2.errors import MagentoError, as_result
from pim_hub.drivers.magento2.keys import M_MODEL, M_MODEL_ROOT, M_MODEL_VARIANT, M_PRODUCT
from pim_hub.drivers.magento2.lookups import products_by_sku
from pim_hub.drivers.magento2.products import Products
from pim_hub.drivers.magento2.references import References
from pim_hub.schemas.events import Job


@dataclass
class Prepared:
    """A product (or root product model) job turned into payloads, ready for the bulk API."""

    job: Job
    map_type: str  # M_PRODUCT or M_MODEL
    map_key: str
    payload: ProductPayload


def _candidates(jobs: list[Job]) -> list[tuple[int, dict[str, Any], bool]]:
    """(index, state, is a model) of the jobs the bulk API may create.

    Creations of products and root models whose entity has no other job in the batch;
    anything else (and any state that does not parse) goes the one-by-one path.
    """
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.mutation.entity_key] = counts.get(job.mutation.entity_key, 0) + 1
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
    return candidates


class Batches:
    """Delivers a batch of jobs, creating what it can in bulk."""

    def __init__(self, refs: References, products: Products, configurables: Configurables) -> None:
        self._refs = refs
        self._products = products
        self._configurables = configurables

    async def deliver(
        self,
        jobs: list[Job],
        api: MagentoClient,
        mapping: EntityMappingService,
        one: Callable[[Job], Awaitable[DeliveryResult]],
    ) -> list[DeliveryResult]:
        """The result of each job, in order; `one` delivers a job that is not created in bulk."""
        results: dict[int, DeliveryResult] = {}
        states: dict[int, dict[str, Any]] = {}
        candidates = _candidates(jobs)

        # The batch's references (types, options, categories) are looked up together: one
        # query per kind for the batch instead of one per product.
        payloads = await self._products.payloads(
            [(state, "configurable" if model else "simple") for _, state, model in candidates],
            api,
            mapping,
        )
        prepared: list[tuple[int, Prepared]] = []
        roots: dict[str, str] = {}
        family_variants: dict[str, str] = {}
        for (index, state, model), payload in zip(candidates, payloads, strict=True):
            if isinstance(payload, MagentoError):
                results[index] = as_result(payload)
                continue
            if payload.images:
                continue
            states[index] = state
            if not model:
                prepared.append(
                    (
                        index,
                        Prepared(jobs[index], M_PRODUCT, jobs[index].mutation.entity_key, payload),
                    )
                )
                continue
            code = str(state["code"])
            roots[code] = code
            if state.get("family_variant"):
                family_variants[code] = str(state["family_variant"])
            prepared.append((index, Prepared(jobs[index], M_MODEL, code, payload)))
        # What the one-by-one path records before its upsert: variants find their root.
        if roots:
            await mapping.put_many(M_MODEL_ROOT, roots)
            self._refs.wrote_mappings()
        if family_variants:
            await mapping.put_many(M_MODEL_VARIANT, family_variants)
        if prepared:
            # Variants in other batches wait for these configurables while they are created.
            with self._refs.delivering(M_MODEL, roots):
                try:
                    outcome = await self._bulk_upsert([p for _, p in prepared], api, mapping)
                except MagentoError as exc:
                    outcome = [as_result(exc)] * len(prepared)
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
            errors = await self._configurables.link_families(children, api, mapping, bulk=True)
            for parent, members in families.items():
                for (index, _), error in zip(members, errors[parent], strict=True):
                    if error is not None:
                        results[index] = as_result(error)

        async def one_by_one(indexes: list[int]) -> None:
            for index in indexes:
                results[index] = await one(jobs[index])

        rest: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            if index not in results:
                rest.setdefault(job.mutation.entity_key, []).append(index)
        await asyncio.gather(link(), *(one_by_one(ixs) for ixs in rest.values()))
        return [results[i] for i in range(len(jobs))]

    async def _bulk_upsert(
        self, prepared: list[Prepared], api: MagentoClient, mapping: EntityMappingService
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

        admin = await run_bulk(
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
            outcome = await run_bulk(
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
            rows = await products_by_sku(api, [prepared[i].payload.sku for i in done])
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
