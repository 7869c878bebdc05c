"""The dispatcher feeds the Magento driver's async bulk path whole batches (Magento sandbox)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pim_hub.drivers.discovery import discover
from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.magento import MagentoState, SandboxConfig, create_app, running_server
from pim_hub.schemas import topics
from pim_hub.services.dispatcher.app import Dispatcher, run_in_thread
from pim_hub.services.dispatcher.settings import DispatcherOptions
from tests.integration.test_dispatcher_helpers import (
    SERDE,
    add_integration,
    final_statuses,
    status_watcher,
)
from tests.unit.magento2.helpers import SEEDS, Mutations, config_dict, product

pytestmark = pytest.mark.integration

PRODUCTS = 6


@pytest.fixture
def magento() -> Iterator[tuple[str, MagentoState]]:
    state = MagentoState(SandboxConfig(attributes=SEEDS, bulk_delay=0.0))
    with running_server(create_app(state)) as url:
        yield url, state


def _jobs(integration: str, skus: list[str]) -> list[dict[str, Any]]:
    mutations = Mutations()
    records = []
    for sku in skus:
        job = mutations.job("product", product(sku))
        records.append({**job.to_record(), "integration_id": integration})
    return records


def _bulk_posts(state: MagentoState) -> list[str]:
    """The store of each accepted async bulk POST."""
    with state.lock:
        return [
            r.store
            for r in state.stats.recent
            if r.method == "POST" and "/async/bulk/" in r.path and r.status == 202
        ]


def _single_writes(state: MagentoState) -> int:
    """Product saves through the synchronous API."""
    with state.lock:
        return sum(
            1
            for r in state.stats.recent
            if r.method in ("POST", "PUT")
            and "/V1/products" in r.path
            and "/async/" not in r.path
            and "/attributes/" not in r.path  # options created on the way
        )


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_magento_batches_go_through_the_bulk_api_only_in_async_mode(
    hub_settings: Settings,
    database_url: str,
    unique: str,
    magento: tuple[str, MagentoState],
    mode: str,
) -> None:
    url, state = magento
    integ = f"m2bulk-{mode}-{unique}"
    config = config_dict(base_url=url, bulk=mode, bulk_poll_interval_s=0.05)
    add_integration(database_url, discover(), integ, "magento2", config)
    skus = [f"BULK-{mode}-{unique}-{i}" for i in range(PRODUCTS)]
    records = _jobs(integ, skus)
    watch = status_watcher(hub_settings, integ)
    # On one partition before the dispatcher starts: its first poll reads them all at once.
    producer = make_producer(hub_settings)
    for rec in records:
        value = SERDE.encode("Job", rec, topic=topics.JOBS_NORMAL)
        producer.produce(topics.JOBS_NORMAL, value, key=integ)
    assert producer.flush(30) == 0
    opts = DispatcherOptions.from_settings(hub_settings, linger_ms=300, batch_size=50)
    disp = Dispatcher(hub_settings, "magento2", "normal", discover(), opts)
    stop = run_in_thread(disp)
    try:
        statuses = watch.wait(
            lambda recs: len(final_statuses(recs)) == PRODUCTS, 60, "a status per job"
        )
    finally:
        stop()
        watch.close()
    assert disp.failure is None, disp.failure
    assert set(final_statuses(statuses).values()) == {"delivered"}, statuses
    # The bulk path reports the SKU, the sync path `id:sku`.
    assert sorted(s["target_ref"].rpartition(":")[2] for s in statuses) == sorted(skus)
    for sku in skus:
        values = state.product_values(sku)
        assert values["fr"]["name"] == f"Chemise {sku}"
        assert values["de"]["name"] == f"Hemd {sku}"
    posts = _bulk_posts(state)
    if mode == "async":
        # The six jobs came as one batch: one bulk POST for the admin values and one per
        # store view with values of its own (a view of the admin locale may inherit the
        # admin values and get none), and no product was written one by one.
        assert len(posts) == len(set(posts)), posts
        assert sorted(p for p in posts if p != "default") == ["all", "de", "fr"], posts
        assert _single_writes(state) == 0
        assert disp.stats.driver_calls == 1
    else:
        # Sync mode: the dispatcher calls handle() per job, never the bulk API.
        assert posts == []
        assert _single_writes(state) >= PRODUCTS
