"""REST sync against the sandbox (served in a thread), the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from pim_hub.runtime.kafka import AsyncProducer, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.akeneo.app import FaultConfig, create_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.sandbox.akeneo.server import serve_in_thread
from pim_hub.schemas.serde import Serde
from pim_hub.services.ingest.akeneo import API, AkeneoClient
from pim_hub.services.ingest.sync import (
    ENTITY_TYPES,
    LogProgress,
    SyncRunner,
    TypeReport,
    WatermarkStore,
)
from tests.integration.test_ingest_support import new_topic, read_all, snapshots

pytestmark = pytest.mark.integration

CREDS: dict[str, Any] = {"client_id": "cid", "secret": "sec", "username": "api", "password": "pw"}
PRODUCTS = 250


class Sandbox:
    def __init__(self, url: str, app: Any, catalogue: Catalogue, faults: FaultConfig):
        self.url, self.app, self.catalogue, self.faults = url, app, catalogue, faults


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    catalogue = Catalogue(PRODUCTS, seed=33)
    faults = FaultConfig(seed=4)
    app = create_app(catalogue, **CREDS, faults=faults)
    with serve_in_thread(app) as url:
        yield Sandbox(url, app, catalogue, faults)


class CrashAfter(LogProgress):
    """Raises after `pages` acknowledged pages of one type: a process dying mid-run."""

    def __init__(self, entity_type: str, pages: int, action: Any = None) -> None:
        super().__init__()
        self.entity_type, self.pages, self.action = entity_type, pages, action

    def advance(self, entity_type: str, items: int) -> None:
        super().advance(entity_type, items)
        if entity_type == self.entity_type:
            self.pages -= 1
            if self.pages == 0:
                if self.action is None:
                    raise RuntimeError("simulated crash")
                self.action()


def sync(
    settings: Settings,
    database_url: str,
    sb: Sandbox,
    topic: str,
    mode: Literal["full", "delta"],
    types: tuple[str, ...] = ENTITY_TYPES,
    progress: LogProgress | None = None,
    runner_kw: dict[str, Any] | None = None,
    **client_kw: Any,
) -> tuple[list[TypeReport], dict[str, int]]:
    async def main() -> tuple[list[TypeReport], dict[str, int]]:
        producer = AsyncProducer(make_producer(settings))
        await producer.start()
        store = WatermarkStore(database_url, sb.url)
        try:
            async with AkeneoClient(sb.url, **CREDS, backoff_base_s=0.01, **client_kw) as client:
                runner = SyncRunner(
                    client,
                    producer,
                    Serde(),
                    store,
                    progress=progress or LogProgress(),
                    topic=topic,
                    **(runner_kw or {}),
                )
                reports = await runner.run(mode, types)
                return reports, dict(client.stats)
        finally:
            await producer.close()
            store.close()

    return asyncio.run(main())


def count_types(records: list[Any]) -> Counter[str]:
    return Counter(s["entity_type"] for s in snapshots(records))


def test_full_sync_publishes_every_entity_type_once(hub_settings, database_url, sandbox):
    topic = new_topic(hub_settings, "sync")
    reports, _ = sync(hub_settings, database_url, sandbox, topic, "full")
    by_type = {r.entity_type: r for r in reports}
    cat = sandbox.catalogue
    assert by_type["product"].published == PRODUCTS and by_type["product"].pages == 3
    options = sum(len(v) for v in cat.attribute_options.values())
    variants = sum(len(v) for v in cat.family_variants.values())
    expected = {
        "product": PRODUCTS,
        "product_model": sum(1 for _ in cat.iter_model_codes()),
        "category": len(cat.categories),
        "family": len(cat.families),
        "family_variant": variants,
        "attribute": len(cat.attributes),
        "attribute_option": options,
        "channel": len(cat.channels),
        "locale": len(cat.locales),
    }
    assert {t: r.published for t, r in by_type.items()} == expected
    found = read_all(hub_settings, topic, sum(expected.values()))
    assert count_types(found) == Counter(expected)
    keys = {m.key().decode() for m in found}
    assert f"product:{cat.product_uuid(0)}" in keys and "attribute_option:color.red" in keys
    # search_after paging with limit 100, following the next links.
    stats = sandbox.app.state.stats
    assert stats[(f"{API}/products-uuid", 200)] == 3
    store = WatermarkStore(database_url, sandbox.url)
    assert all(store.watermark(t) is not None for t in ENTITY_TYPES)
    assert store.checkpoint("product") is None
    store.close()


def test_delta_sync_reads_only_what_changed(hub_settings, database_url, sandbox):
    full_topic, delta_topic = new_topic(hub_settings, "full"), new_topic(hub_settings, "delta")
    sync(hub_settings, database_url, sandbox, full_topic, "full", ("product", "product_model"))
    cat = sandbox.catalogue
    edited = [cat.product_uuid(n) for n in (5, 17, 230)]
    for u in edited:
        cat.update_product(u, enabled=False)
    reports, _ = sync(
        hub_settings, database_url, sandbox, delta_topic, "delta", ("product", "product_model")
    )
    assert {r.entity_type: r.published for r in reports} == {"product": 3, "product_model": 0}
    found = read_all(hub_settings, delta_topic, 3)
    assert sorted(m.key().decode() for m in found) == sorted(f"product:{u}" for u in edited)


def test_crash_resumes_from_the_last_acknowledged_page(hub_settings, database_url, sandbox):
    topic = new_topic(hub_settings, "crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        sync(
            hub_settings,
            database_url,
            sandbox,
            topic,
            "full",
            ("product",),
            CrashAfter("product", 1),
        )
    store = WatermarkStore(database_url, sandbox.url)
    checkpoint = store.checkpoint("product")
    assert checkpoint is not None and checkpoint.items == 100 and checkpoint.cursor
    assert store.watermark("product") is None  # not moved: the run did not finish
    reports, _ = sync(hub_settings, database_url, sandbox, topic, "full", ("product",))
    assert reports[0].resumed and reports[0].published == PRODUCTS - 100
    assert store.checkpoint("product") is None and store.watermark("product") is not None
    store.close()
    found = read_all(hub_settings, topic, PRODUCTS)
    # Every product exactly once: the acknowledged page was not read again.
    assert len(found) == PRODUCTS and len({m.key() for m in found}) == PRODUCTS


def test_token_expiry_mid_sync_is_refreshed(hub_settings, database_url, sandbox):
    topic = new_topic(hub_settings, "token")
    # After the first product page is acknowledged every token expires; the next product
    # pages (read one after another: each needs the previous page's cursor) meet a 401.
    expire = CrashAfter("product", 1, action=sandbox.app.state.tokens.expire_all)
    # Small pages: more of them than the sync reads ahead, so some are read after the expiry.
    reports, stats = sync(
        hub_settings,
        database_url,
        sandbox,
        topic,
        "full",
        ("channel", "product"),
        expire,
        runner_kw={"page_size": 20},
    )
    assert reports[1].published == PRODUCTS
    assert stats["token_grants"] == 2
    assert sandbox.app.state.stats[(f"{API}/products-uuid", 401)] >= 1


def test_429_and_5xx_are_retried_without_loss_or_duplicates(hub_settings, database_url, sandbox):
    topic = new_topic(hub_settings, "faults")
    sandbox.faults.rate_429 = 0.25
    sandbox.faults.retry_after = 0
    sandbox.faults.rate_5xx = 0.2
    reports, stats = sync(
        hub_settings,
        database_url,
        sandbox,
        topic,
        "full",
        ("product", "product_model", "attribute_option"),
    )
    assert stats["retries"] >= 3
    statuses = {status for (_, status) in sandbox.app.state.stats}
    assert {429, 500} <= statuses
    total = sum(r.published for r in reports)
    found = read_all(hub_settings, topic, total)
    assert len(found) == total and len({(m.key(), m.value()) for m in found}) == total
    assert count_types(found)["product"] == PRODUCTS


#: four `updated` ranges of pages of 20, three pages in flight per range
PARALLEL: dict[str, Any] = {"streams": 4, "window": 3, "page_size": 20}


def test_parallel_ranges_read_every_product_once(hub_settings, database_url, sandbox):
    topic = new_topic(hub_settings, "ranges")
    reports, _ = sync(
        hub_settings, database_url, sandbox, topic, "full", ("product",), runner_kw=PARALLEL
    )
    assert reports[0].published == PRODUCTS and reports[0].pages >= PRODUCTS // 20
    found = read_all(hub_settings, topic, PRODUCTS)
    cat = sandbox.catalogue
    assert sorted(m.key().decode() for m in found) == sorted(
        f"product:{cat.product_uuid(n)}" for n in range(PRODUCTS)
    )
    stats = sandbox.app.state.stats
    # The boundaries were counted (page pagination with_count) and the lists read in ranges:
    # four first pages instead of one.
    assert stats[(f"{API}/products-uuid", 200)] >= PRODUCTS // 20 + 4
    store = WatermarkStore(database_url, sandbox.url)
    assert store.checkpoint("product") is None and store.ranges("product") == {}
    assert store.watermark("product") is not None
    store.close()


def test_parallel_ranges_resume_each_range_after_a_crash(hub_settings, database_url, sandbox):
    topic = new_topic(hub_settings, "ranges-crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        sync(
            hub_settings,
            database_url,
            sandbox,
            topic,
            "full",
            ("product",),
            CrashAfter("product", 3),
            runner_kw=PARALLEL,
        )
    store = WatermarkStore(database_url, sandbox.url)
    checkpoint = store.checkpoint("product")
    assert checkpoint is not None and checkpoint.cursor == "ranges:4"
    ranges = store.ranges("product")
    assert 1 <= len(ranges) <= 4 and all(cursor for cursor, _ in ranges.values())
    # At least the three pages counted were recorded (other ranges may have recorded theirs
    # while the crash spread), in the run and in their ranges alike; a range that finished
    # before the crash is dropped, its items stay counted in the run.
    done = checkpoint.items
    in_ranges = sum(items for _, items in ranges.values())
    assert done >= 60 and done % 20 == 0 and in_ranges % 20 == 0
    assert in_ranges == done or (len(ranges) < 4 and in_ranges < done)
    assert store.watermark("product") is None
    reports, _ = sync(
        hub_settings, database_url, sandbox, topic, "full", ("product",), runner_kw=PARALLEL
    )
    assert reports[0].resumed and reports[0].published == PRODUCTS - done
    assert store.checkpoint("product") is None and store.ranges("product") == {}
    store.close()
    found = read_all(hub_settings, topic, PRODUCTS)
    keys = {m.key() for m in found}
    # Nothing lost; what was published but not yet recorded (at most window - 1 pages per
    # range) is published again.
    assert len(keys) == PRODUCTS
    assert len(found) <= PRODUCTS + 4 * (PARALLEL["window"] - 1) * 20


def test_parallel_delta_reads_only_what_changed(hub_settings, database_url, sandbox):
    full_topic, delta_topic = new_topic(hub_settings, "rfull"), new_topic(hub_settings, "rdelta")
    sync(hub_settings, database_url, sandbox, full_topic, "full", ("product",), runner_kw=PARALLEL)
    cat = sandbox.catalogue
    edited = [cat.product_uuid(n) for n in range(0, PRODUCTS, 2)]  # enough to split again
    for u in edited:
        cat.update_product(u, enabled=False)
    reports, _ = sync(
        hub_settings, database_url, sandbox, delta_topic, "delta", ("product",), runner_kw=PARALLEL
    )
    assert reports[0].published == len(edited)
    found = read_all(hub_settings, delta_topic, len(edited))
    assert sorted(m.key().decode() for m in found) == sorted(f"product:{u}" for u in edited)


def test_sync_command_without_progress_keeps_stdout_for_the_report(
    hub_settings, hub_env, database_url, sandbox, monkeypatch
):
    from typer.testing import CliRunner

    from pim_hub.cli.main import app
    from pim_hub.services.ingest import sync as sync_mod

    topic = new_topic(hub_settings, "cli")
    used: list[Any] = []

    class OwnTopic(sync_mod.SyncRunner):
        # The command publishes to pim.snapshots; this run writes to a topic of its own.
        def __init__(self, *args: Any, **kw: Any) -> None:
            used.append(kw["progress"])
            super().__init__(*args, **{**kw, "topic": topic})

    monkeypatch.setattr(sync_mod, "SyncRunner", OwnTopic)
    env = {
        **hub_env,
        "HUB_INGEST_AKENEO_URL": sandbox.url,
        "HUB_INGEST_AKENEO_CLIENT_ID": CREDS["client_id"],
        "HUB_INGEST_AKENEO_SECRET": CREDS["secret"],
        "HUB_INGEST_AKENEO_USERNAME": CREDS["username"],
        "HUB_INGEST_AKENEO_PASSWORD": CREDS["password"],
    }
    args = ["sync", "akeneo", "--full", "--entity", "channel", "--entity", "locale"]
    result = CliRunner().invoke(app, [*args, "--no-progress"], env=env)
    assert result.exit_code == 0, result.output
    # No bar and no periodic lines; stdout holds the report alone, a line per type.
    [progress] = used
    assert isinstance(progress, LogProgress) and progress.every_s == float("inf")
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["channel", "locale"]
    published = {line.split()[0]: int(line.split()[1]) for line in lines}
    assert published["channel"] > 0 and published["locale"] > 0
    assert count_types(read_all(hub_settings, topic, sum(published.values()))) == published
