"""ID mapping service and the log driver against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pim_hub.devstack.stack import query
from pim_hub.drivers.base import EntityMappingService, IntegrationContext
from pim_hub.drivers.log import LogConfig, LogDriver
from pim_hub.registry.mapping import PostgresMappingService, open_pool
from pim_hub.schemas.events import Job

pytestmark = pytest.mark.integration


def test_mapping_single_and_bulk_with_time_of_last_change(database_url: str, unique: str) -> None:
    async def scenario() -> None:
        pool = await open_pool(database_url, max_size=2)
        try:
            shop: EntityMappingService = PostgresMappingService(pool, f"shop-{unique}")
            other = PostgresMappingService(pool, f"other-{unique}")
            assert isinstance(shop, PostgresMappingService)

            assert await shop.get("product", "p1") is None
            await shop.put("product", "p1", "101")
            await shop.put_many("product", {"p2": "102", "p3": "103"})
            await shop.put_many("category", {"p1": "c-1"})
            assert await shop.get("product", "p1") == "101"
            assert await shop.get_many("product", ["p1", "p2", "p3", "missing"]) == {
                "p1": "101",
                "p2": "102",
                "p3": "103",
            }
            assert await shop.get_many("product", []) == {}
            assert await shop.get("category", "p1") == "c-1", "entity types are separate"
            assert await other.get("product", "p1") is None, "integrations are separate"
            assert await shop.source_for("product", "102") == "p2"
            assert await shop.source_for("product", "999") is None

            first = await shop.get_entry("product", "p1")
            assert first is not None and first.target_id == "101"
            assert abs((datetime.now(UTC) - first.updated_at).total_seconds()) < 60
            await asyncio.sleep(0.05)
            # Writing the same target again is not a change: the time stays.
            await shop.put_many("product", {"p1": "101", "p2": "202"})
            entries = await shop.get_entries("product", ["p1", "p2"])
            assert entries["p1"] == first
            assert entries["p2"].target_id == "202"
            assert entries["p2"].updated_at > first.updated_at

            assert await shop.remove("product", "p3") is True
            assert await shop.remove("product", "p3") is False
            assert await shop.get("product", "p3") is None
        finally:
            await pool.close()

    asyncio.run(scenario())


def job(integration_id: str, unique: str, priority: str = "low") -> Job:
    now = datetime.now(UTC)
    return Job.model_validate(
        {
            "job_id": f"job-{unique}",
            "integration_id": integration_id,
            "driver": "log",
            "priority": priority,
            "created_at": now,
            "mutation": {
                "mutation_id": f"m-{unique}",
                "entity_type": "product",
                "entity_key": f"product:{unique}",
                "operation": "update",
                "changes": [
                    {
                        "field": "values",
                        "attribute": "description",
                        "locale": "en_US",
                        "old": '"a"',
                        "new": '"b"',
                    }
                ],
                "version": "2026-01-01T00:00:00+00:00",
                "causation_id": "s",
                "source_received_at": now,
                "created_at": now,
            },
        }
    )


def test_log_driver_records_each_job_once(database_url: str, unique: str) -> None:
    async def deliver(config: dict[str, Any], jobs: list[Job]) -> list[Any]:
        pool = await open_pool(database_url, max_size=1)
        driver = LogDriver()
        async with httpx.AsyncClient() as http:
            context = IntegrationContext(
                integration_id=f"log-{unique}",
                config=LogDriver.validate_config(config),
                mapping=PostgresMappingService(pool, f"log-{unique}"),
                http=http,
                logger=logging.getLogger("test"),
            )
            await driver.open(context)
            try:
                return await driver.handle_batch(jobs, context)
            finally:
                await driver.close()
                await pool.close()

    first = job(f"log-{unique}", unique)
    results = asyncio.run(deliver({"dsn": database_url}, [first, first]))
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    assert results[0].target_ref == f"driver_log_deliveries/job-{unique}"
    rows = query(
        database_url, "SELECT * FROM driver_log_deliveries WHERE job_id = %s", first.job_id
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["attempts"], row["priority"], row["entity_key"]) == (2, "low", f"product:{unique}")
    assert row["changes"] == [
        {
            "field": "values",
            "attribute": "description",
            "locale": "en_US",
            "scope": None,
            "old": "a",
            "new": "b",
        }
    ]

    quiet = job(f"log-{unique}", f"{unique}-q")
    asyncio.run(deliver({"dsn": database_url, "include_values": False}, [quiet]))
    rows = query(
        database_url, "SELECT changes FROM driver_log_deliveries WHERE job_id = %s", quiet.job_id
    )
    assert rows[0]["changes"] == [
        {"field": "values", "attribute": "description", "locale": "en_US", "scope": None}
    ]


def test_log_driver_config_is_validated() -> None:
    assert isinstance(LogDriver.validate_config({"dsn": "postgresql:///x"}), LogConfig)
    with pytest.raises(ValueError, match="dsn"):
        LogDriver.validate_config({})
