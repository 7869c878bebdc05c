"""Splitting the product list into `updated` ranges (sandbox in process, no broker)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from pim_hub.sandbox.akeneo.app import create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.services.ingest.akeneo import AkeneoClient
from pim_hub.services.ingest.sync import SyncRunner

CREDS: dict[str, Any] = {"client_id": "cid", "secret": "sec", "username": "api", "password": "pw"}


def _split(products: int, streams: int, since: datetime | None = None) -> list[list[str]]:
    """The uuids each range's pages hold, read to the end."""

    async def main() -> list[list[str]]:
        app = create_app(Catalogue(products, seed=11), **CREDS)
        transport = httpx.ASGITransport(app=app)
        async with AkeneoClient("http://sandbox", **CREDS, transport=transport) as client:
            runner: Any = SyncRunner(client, None, None, None, streams=streams)  # type: ignore[arg-type]
            firsts = await runner._split("product", since, datetime.now(UTC))
            ranges = []
            for first in firsts:
                uuids = []
                async for items, _ in client.pages(first):
                    uuids += [i["uuid"] for i in items]
                ranges.append(uuids)
            return ranges

    return asyncio.run(main())


def test_ranges_cover_every_product_once_and_about_evenly() -> None:
    ranges = _split(2000, 4)
    assert len(ranges) == 4
    everything = [u for r in ranges for u in r]
    catalogue = Catalogue(2000, seed=11)
    assert sorted(everything) == sorted(catalogue.product_uuid(n) for n in range(2000))
    # Bisection stops within an eighth of a range's share of each boundary.
    assert all(abs(len(r) - 500) <= 2 * 2000 // 32 for r in ranges)


def test_ranges_of_a_delta_keep_its_lower_bound() -> None:
    since = datetime(2023, 9, 1, tzinfo=UTC)
    catalogue = Catalogue(2000, seed=11)
    expected = sorted(
        catalogue.product_uuid(n) for n in range(2000) if catalogue.effective_updated(n) > since
    )
    ranges = _split(2000, 3, since)
    assert len(ranges) == 3
    assert sorted(u for r in ranges for u in r) == expected


def test_too_few_products_are_not_split() -> None:
    assert _split(250, 4) == []  # fewer than one page of 100 per range
