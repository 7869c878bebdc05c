"""Which dispatchers integrations need, from their drivers' entity types and priority maps."""

from __future__ import annotations

from typing import Any

from prometheus_client.samples import Sample

from pim_hub.ops.dispatchers import (
    Coverage,
    DispatcherNeed,
    dispatch_group,
    integration_priorities,
    needed_dispatchers,
)
from pim_hub.ops.exporter import coverage_families
from pim_hub.registry.model import Integration
from pim_hub.registry.queue_map import parse_queue_map
from pim_hub.services.dispatcher.app import group_id

QMAP = parse_queue_map(None)


def _integ(
    id_: str,
    driver: str,
    types: list[str] | None = None,
    pmap: dict[str, Any] | None = None,
    driver_types: tuple[str, ...] | None = None,
    enabled: bool = True,
) -> Integration:
    return Integration(
        id=id_,
        name=id_,
        driver=driver,
        enabled=enabled,
        config={},
        entity_types=types,
        priority_map=pmap or {},
        driver_entity_types=driver_types,
    )


def test_the_group_name_is_the_dispatchers() -> None:
    assert dispatch_group("webhook", "normal") == group_id("webhook", "normal")


def test_a_webhook_for_every_type_needs_every_priority() -> None:
    assert integration_priorities(_integ("w", "webhook"), QMAP) == ["immediate", "normal", "low"]


def test_products_only_never_reach_low() -> None:
    integ = _integ("w", "webhook", types=["product"])
    assert integration_priorities(integ, QMAP) == ["immediate", "normal"]


def test_categories_only_are_low_and_deletes_immediate() -> None:
    integ = _integ("c", "webhook", types=["category"])
    # enabled is a field rule: counted for every type (an over-approximation on purpose).
    assert integration_priorities(integ, QMAP) == ["immediate", "low"]
    calm = _integ(
        "c2",
        "webhook",
        types=["category"],
        pmap={"operations": {"delete": "low"}, "fields": {"enabled": "low"}},
    )
    assert integration_priorities(calm, QMAP) == ["low"]


def test_the_drivers_recorded_types_limit_the_priorities() -> None:
    integ = _integ("m", "magento2", driver_types=("category", "family"))
    assert "normal" not in integration_priorities(integ, QMAP)


def test_needs_group_integrations_by_driver_and_priority_and_skip_disabled() -> None:
    needs = needed_dispatchers(
        [
            _integ("a", "webhook", types=["product"]),
            _integ("b", "webhook", types=["category"], pmap={"operations": {"delete": "low"}}),
            _integ("c", "log", enabled=False),
        ],
        QMAP,
    )
    assert [(n.driver, n.priority, n.integrations) for n in needs] == [
        ("webhook", "immediate", ("a", "b")),
        ("webhook", "normal", ("a",)),
        # a's live jobs never reach low; its replays and resyncs go there by default.
        ("webhook", "low", ("a", "b")),
    ]
    assert needs[0].topic == "hub.jobs.immediate"
    assert needs[0].command == "hub dispatcher --driver webhook --priority immediate"


def test_coverage_states_and_metric_families() -> None:
    need = DispatcherNeed("webhook", "normal", "hub.jobs.normal", ("a",))
    missing = Coverage(need, committed_partitions=0, partitions=2, uncovered=5)
    idle = Coverage(need, committed_partitions=0, partitions=2, uncovered=0)
    behind = Coverage(need, committed_partitions=2, partitions=2, lag=3)
    broken = Coverage(need, error="broker down")
    assert [c.state for c in (missing, idle, behind, broken)] == [
        "missing",
        "not started",
        "behind",
        "unknown",
    ]
    assert missing.missing and not idle.missing and not broken.missing
    [uncovered, needed] = coverage_families([missing, broken])
    assert uncovered.samples == [
        Sample(
            "pimhub_dispatcher_uncovered_messages",
            {
                "group": "hub.dispatch.webhook.normal",
                "topic": "hub.jobs.normal",
                "priority": "normal",
                "driver": "webhook",
            },
            5,
        )
    ]
    assert len(needed.samples) == 1
