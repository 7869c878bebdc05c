"""Attribute options in Magento: their ids, found once, created once per process."""

from __future__ import annotations

import asyncio
from typing import Any

from pim_hub.drivers.base import EntityMappingService
from pim_hub.drivers.magento2 import builder
from pim_hub.drivers.magento2.builder import OptionRef
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.errors import MagentoError, NotFound, PermanentError
from pim_hub.drivers.magento2.keys import M_OPTION


class OptionCatalogue:
    """Option ids by (Magento attribute, Akeneo option code), and the store views' ids.

    One creator per attribute in this process: two jobs needing the same new option must not
    both POST it (Magento refuses a duplicate admin label).
    """

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], str] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.store_ids: dict[str, int] | None = None

    async def store_view_ids(self, api: MagentoClient) -> dict[str, int]:
        if self.store_ids is None:
            rows = await api.call("GET", "/V1/store/storeViews")
            self.store_ids = {str(r["code"]): int(r["id"]) for r in rows if int(r["id"]) != 0}
        return self.store_ids

    async def list_options(self, api: MagentoClient, attribute: str) -> dict[str, str]:
        rows = await api.call("GET", f"/V1/products/attributes/{attribute}/options", store="all")
        return {
            str(r.get("label")): str(r.get("value"))
            for r in rows or []
            if r.get("value") not in (None, "")
        }

    async def ensure(
        self,
        refs: set[OptionRef],
        api: MagentoClient,
        mapping: EntityMappingService,
        labels: dict[str, Any] | None = None,
    ) -> dict[tuple[str, str], str]:
        """Option ids of every ref, creating missing options once (admin label = Akeneo code)."""
        ids, errors = await self.resolve(refs, api, mapping, labels)
        if errors:
            raise errors[min(errors)]
        return ids

    async def resolve(
        self,
        refs: set[OptionRef],
        api: MagentoClient,
        mapping: EntityMappingService,
        labels: dict[str, Any] | None = None,
    ) -> tuple[dict[tuple[str, str], str], dict[str, MagentoError]]:
        """Option ids of the refs (one mapping query for all) and the error of each attribute
        whose missing options could not be created."""
        out: dict[tuple[str, str], str] = {}
        errors: dict[str, MagentoError] = {}
        unknown: dict[str, tuple[str, str]] = {}
        for ref in refs:
            key = (ref.magento, ref.code)
            if key in self.ids:
                out[key] = self.ids[key]
            else:
                unknown[f"{ref.magento}.{ref.code}"] = key
        if not unknown:
            return out, errors
        known = await mapping.get_many(M_OPTION, sorted(unknown))
        by_attr: dict[str, list[str]] = {}
        for source, key in sorted(unknown.items()):
            if source in known:
                out[key] = known[source]
            else:
                by_attr.setdefault(key[0], []).append(key[1])
        self.ids.update(out)
        for attribute, codes in sorted(by_attr.items()):
            # One creator per attribute in this process: two jobs needing the same new
            # option must not both POST it (Magento refuses a duplicate admin label).
            async with self.locks.setdefault(attribute, asyncio.Lock()):
                # Created by another job of this process while this one waited.
                missing = [c for c in codes if (attribute, c) not in self.ids]
                try:
                    if missing:
                        await self.create(attribute, missing, api, mapping, labels)
                except MagentoError as exc:
                    errors[attribute] = exc
                    continue
            out.update(((attribute, c), self.ids[(attribute, c)]) for c in codes)
        return out, errors

    async def create(
        self,
        attribute: str,
        codes: list[str],
        api: MagentoClient,
        mapping: EntityMappingService,
        labels: dict[str, Any] | None,
    ) -> dict[str, str]:
        try:
            existing = await self.list_options(api, attribute)
        except NotFound as exc:
            raise PermanentError(
                f"Magento has no attribute {attribute!r} to hold options: create it first",
                status=404,
                kind="mapping",
            ) from exc
        found: dict[str, str] = {c: existing[c] for c in codes if c in existing}
        store_ids = await self.store_view_ids(api) if labels else {}
        for code in codes:
            if code in found:
                continue
            body = {"option": builder.build_option(code, labels or {}, api.config, store_ids)}
            try:
                option_id = await api.call(
                    "POST", f"/V1/products/attributes/{attribute}/options", body, store="all"
                )
            except PermanentError as exc:
                # Created by another process meanwhile (duplicate label): adopt it.
                again = await self.list_options(api, attribute)
                if code not in again:
                    raise exc
                option_id = again[code]
            found[code] = str(option_id).removeprefix("id_")
        await mapping.put_many(M_OPTION, {f"{attribute}.{c}": i for c, i in found.items()})
        self.ids.update(((attribute, c), i) for c, i in found.items())
        return found
