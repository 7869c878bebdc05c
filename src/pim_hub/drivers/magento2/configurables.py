"""Configurable products: variants attached to their parent, its options kept complete.

Akeneo's product model becomes a configurable product; its variants become simple products
attached to it, and the configurable's options (one per axis of the family variant) must
hold every variant's axis value before the variant can be attached.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from pim_hub.drivers.base import EntityMappingService
from pim_hub.drivers.magento2 import builder
from pim_hub.drivers.magento2.builder import OptionRef
from pim_hub.drivers.magento2.bulk import write_each
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.errors import (
    MagentoError,
    MappingError,
    MissingReference,
    NotFound,
    PermanentError,
    RetryableError,
)
from pim_hub.drivers.magento2.keys import (
    M_AXES,
    M_LINKED,
    M_MODEL,
    M_MODEL_ROOT,
    M_MODEL_VARIANT,
)
from pim_hub.drivers.magento2.lookups import AttributeIds, products_by_sku, split_ref
from pim_hub.drivers.magento2.options import OptionCatalogue
from pim_hub.drivers.magento2.references import References

#: Magento's answer when a child is attached again (the attachment is done either way)
MSG_ALREADY_ATTACHED = "The product is already attached."


def _option_order(value: str) -> tuple[int, str]:
    """Option ids in numeric order (the order they were created in)."""
    return (int(value), value) if value.isdigit() else (0, value)


class Configurables:
    """Links variants to configurables; one option update per configurable at a time here."""

    def __init__(self, refs: References, opts: OptionCatalogue) -> None:
        self._refs = refs
        self._opts = opts
        self._attribute_ids = AttributeIds()
        self._parent_locks: dict[str, asyncio.Lock] = {}

    async def link_child(
        self,
        state: dict[str, Any],
        parent: str,
        child_sku: str,
        api: MagentoClient,
        mapping: EntityMappingService,
    ) -> None:
        """Attach one variant to the configurable of `parent`; raises what kept it apart."""
        errors = await self.link_families({parent: [(state, child_sku)]}, api, mapping, bulk=False)
        [error] = errors[parent]
        if error is not None:
            raise error

    async def link_families(
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
                plans[parent] = (split_ref(model)[1], rules, child_refs)
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
            failed_skus = await self.ensure_options(api, mapping, rules_of, wanted, bulk=bulk)
        attach: list[tuple[str, int]] = []
        for parent, (parent_sku, _, child_refs) in plans.items():
            if parent_sku in failed_skus:
                fail(parent, failed_skus[parent_sku], list(child_refs))
            else:
                attach.extend((parent, index) for index in child_refs)
        outcome = await write_each(
            api,
            "POST",
            "/V1/configurable-products/{sku}/child",
            [
                (plans[parent][0], {"childSku": families[parent][index][1]})
                for parent, index in attach
            ],
            bulk=bulk and len(attach) > 1,
        )
        linked: dict[str, str] = {}
        for (parent, index), error in zip(attach, outcome, strict=True):
            if isinstance(error, PermanentError) and MSG_ALREADY_ATTACHED in error.message:
                error = None
            out[parent][index] = error
            if error is None:
                linked[families[parent][index][1]] = parent
        if linked:
            # An update of an attached variant that moves neither its parent nor its axes
            # need not attach it again (`Products.upsert_product`).
            await mapping.put_many(M_LINKED, linked)
        return out

    async def ensure_options(
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
            found = await products_by_sku(api, skus)
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
                    attribute_id = await self._attribute_ids.get(api, mapping, rule.magento)
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
        written = await write_each(
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
            after = await products_by_sku(api, checked)
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
