"""Fan-out planning: which integrations get a job, on which priority, under which id and key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from pim_hub.registry.model import IntegrationTarget
from pim_hub.registry.priority import PriorityRules
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.core.fanout import job_id, job_key, plan_jobs
from pim_hub.services.mutator.processing import FanOut

ALL = frozenset({"product", "product_model", "category", "family"})
PRICE = {
    "field": "values",
    "attribute": "price",
    "locale": None,
    "scope": None,
    "old": None,
    "new": orjson.dumps([{"amount": "1.00", "currency": "EUR"}]).decode(),
}
DESCRIPTION = {"field": "values", "attribute": "description", "old": None, "new": '"x"'}


def target(iid: str, **kw: Any) -> IntegrationTarget:
    return IntegrationTarget(
        integration_id=iid,
        driver=kw.pop("driver", "webhook"),
        enabled=kw.pop("enabled", True),
        supported_entity_types=kw.pop("supported", ALL),
        **kw,
    )


def plan(changes: list[dict[str, Any]], targets: list[IntegrationTarget], **kw: Any) -> list[Any]:
    return plan_jobs(
        kw.get("entity_type", "product"),
        kw.get("operation", "update"),
        kw.get("mutation_id", "m-1"),
        changes,
        targets,
        PriorityRules(),
    )


def test_one_job_per_enabled_integration_that_handles_the_type() -> None:
    targets = [
        target("a"),
        target("b", driver="log"),
        target("off", enabled=False),
        target("no-categories", supported=frozenset({"category"})),
        target("filtered", entity_types=frozenset({"category", "family"})),
        target("filter-match", entity_types=frozenset({"product"})),
    ]
    jobs = plan([PRICE], targets)
    assert [(j.integration_id, j.driver) for j in jobs] == [
        ("a", "webhook"),
        ("b", "log"),
        ("filter-match", "webhook"),
    ]


def test_no_integration_no_job() -> None:
    assert plan([PRICE], []) == []
    assert plan([PRICE], [target("off", enabled=False)]) == []


def test_job_ids_are_deterministic_per_mutation_and_integration() -> None:
    first = plan([PRICE], [target("a"), target("b")], mutation_id="m-7")
    again = plan([PRICE], [target("b"), target("a")], mutation_id="m-7")
    assert first == again
    assert first[0].job_id == job_id("m-7", "a") == str(uuid.UUID(first[0].job_id))
    ids = {j.job_id for j in first}
    assert len(ids) == 2
    other = plan([PRICE], [target("a")], mutation_id="m-8")
    assert other[0].job_id not in ids


def test_an_integration_listed_twice_gets_one_job() -> None:
    jobs = plan([PRICE], [target("a"), target("a")])
    assert len(jobs) == 1


def test_each_integration_resolves_its_own_priority() -> None:
    targets = [
        target("default"),
        target(
            "own-map", priority_map={"attributes": {"price": "low", "description": "immediate"}}
        ),
    ]
    assert {j.integration_id: j.priority for j in plan([PRICE], targets)} == {
        "default": "immediate",
        "own-map": "low",
    }
    assert {j.integration_id: j.priority for j in plan([DESCRIPTION], targets)} == {
        "default": "normal",
        "own-map": "immediate",
    }


def test_job_key_keeps_one_entity_in_order_per_integration() -> None:
    assert job_key("a", "product:1") == "a|product:1"
    assert job_key("a", "product:1") != job_key("b", "product:1")


def mutation(mid: str = "m-1") -> dict[str, Any]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "mutation_id": mid,
        "entity_type": "product",
        "entity_key": "product:abc",
        "operation": "update",
        "changes": [{**PRICE, "added": None, "removed": None}],
        "state": None,
        "version": "2026-01-01T00:00:00+00:00",
        "causation_id": "snap-1",
        "correlation_id": None,
        "origin": "external",
        "source_received_at": now,
        "created_at": now,
    }


def test_replayed_mutation_yields_the_same_job_ids_and_keys() -> None:
    fanout = FanOut(Serde(), now=lambda: datetime(2026, 1, 2, tzinfo=UTC))
    targets = [target("a"), target("b", priority_map={"attributes": {"price": "low"}})]
    live = fanout.jobs_for(mutation(), targets)
    replay = fanout.jobs_for(mutation(), targets, mode="replay")
    assert [(p, k, j["job_id"]) for p, k, j in live] == [(p, k, j["job_id"]) for p, k, j in replay]
    assert [(p, k) for p, k, _ in live] == [
        ("immediate", "a|product:abc"),
        ("low", "b|product:abc"),
    ]
    # Every job encodes as a valid Avro Job.
    for priority, _, job in live:
        Serde().encode("Job", job, topic=f"hub.jobs.{priority}")
