"""Akeneo REST client against the sandbox app (in process): tokens, retries, paging."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from pim_hub.sandbox.akeneo.app import FaultConfig, create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.services.ingest.akeneo import API, AkeneoAuthError, AkeneoClient, AkeneoUnavailable

CREDS: dict[str, Any] = {"client_id": "cid", "secret": "sec", "username": "api", "password": "pw"}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make(
    catalogue: Catalogue, faults: FaultConfig | None = None, clock: Clock | None = None, **kw: Any
) -> tuple[Any, AkeneoClient]:
    app = create_app(catalogue, **CREDS, faults=faults or FaultConfig(), clock=clock or time.time)
    client = AkeneoClient(
        "http://sandbox",
        **CREDS,
        transport=httpx.ASGITransport(app=app),
        backoff_base_s=0.01,
        **kw,
    )
    return app, client


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue(250, seed=9)


def test_pages_follow_search_after_links(catalogue):
    async def main() -> list[int]:
        _, client = make(catalogue)
        async with client:
            sizes = []
            async for items, _ in client.pages(
                f"{API}/products-uuid", {"pagination_type": "search_after", "limit": 100}
            ):
                sizes.append(len(items))
            return sizes

    assert asyncio.run(main()) == [100, 100, 50]


def test_expired_token_is_refreshed_and_the_request_replayed(catalogue):
    clock = Clock()

    async def main() -> tuple[dict[str, Any] | None, dict[str, int]]:
        app, client = make(catalogue, clock=clock)
        async with client:
            await client.get(f"{API}/channels")
            app.state.tokens.expire_all()
            # The client still believes its token is fresh: the 401 must trigger a refresh.
            found = await client.get(f"{API}/products-uuid/{catalogue.product_uuid(3)}")
            return found, dict(client.stats)

    found, stats = asyncio.run(main())
    assert found is not None and found["uuid"] == catalogue.product_uuid(3)
    assert stats["token_grants"] == 2


def test_429_waits_retry_after_and_5xx_are_retried(catalogue):
    faults = FaultConfig(retry_after=1)

    async def main() -> tuple[float, dict[str, Any] | None]:
        _app, client = make(catalogue, faults)
        async with client:
            await client.get(f"{API}/locales")
            faults.fail_next(429)
            faults.fail_next(503, 2)
            started = time.monotonic()
            body = await client.get(f"{API}/channels")
            return time.monotonic() - started, body

    elapsed, body = asyncio.run(main())
    assert body is not None and body["_embedded"]["items"]
    assert elapsed >= 1.0  # Retry-After honoured


def test_persistent_5xx_gives_up_with_unavailable(catalogue):
    faults = FaultConfig()

    async def main() -> None:
        _, client = make(catalogue, faults, max_attempts=3)
        async with client:
            await client.get(f"{API}/locales")
            faults.fail_next(500, 5)
            await client.get(f"{API}/channels")

    with pytest.raises(AkeneoUnavailable):
        asyncio.run(main())
    assert len(faults.scripted) == 2  # exactly three tries were made


def test_wrong_credentials_raise_auth_error(catalogue):
    async def main() -> None:
        app = create_app(catalogue, **CREDS)
        client = AkeneoClient(
            "http://sandbox",
            **{**CREDS, "password": "wrong"},
            transport=httpx.ASGITransport(app=app),
        )
        async with client:
            await client.get(f"{API}/channels")

    with pytest.raises(AkeneoAuthError):
        asyncio.run(main())


def test_concurrency_never_exceeds_the_limit(catalogue):
    # The sandbox answers 429 above 2 requests in flight; the client must never trigger it.
    faults = FaultConfig(max_concurrency=2, latency=0.02)

    async def main() -> dict[tuple[str, int], int]:
        app, client = make(catalogue, faults, concurrency=2, max_attempts=1)
        async with client:
            await asyncio.gather(*(client.get(f"{API}/channels") for _ in range(12)))
        return dict(app.state.stats)

    stats = asyncio.run(main())
    assert not any(status == 429 for (_, status) in stats)
    assert stats[(f"{API}/channels", 200)] == 12


def test_products_by_uuid_batches_and_skips_deleted(catalogue):
    uuids = [catalogue.product_uuid(n) for n in range(150)]
    gone = Catalogue(250, seed=9)
    gone.delete_product(uuids[7])

    async def main() -> tuple[dict[str, Any], dict[tuple[str, int], int]]:
        app, client = make(gone)
        async with client:
            found = await client.products_by_uuid(uuids)
        return found, dict(app.state.stats)

    found, stats = asyncio.run(main())
    assert len(found) == 149 and uuids[7] not in found
    assert stats[(f"{API}/products-uuid", 200)] == 2  # 100 per search call
