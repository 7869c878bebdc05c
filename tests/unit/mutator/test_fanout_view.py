"""Fan-out reads a creation's first fields only, and makes the very jobs a full decode makes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.app import _fanout_view
from pim_hub.services.mutator.processing import FanOut
from tests.unit.registry.test_fanout import DESCRIPTION, mutation, target


def _jobs(serde: Serde, mutation: dict[str, Any], encoded: bytes) -> list[tuple[str, bytes]]:
    fanout = FanOut(serde, now=lambda: datetime(2026, 1, 2, tzinfo=UTC))
    targets = [target("a"), target("b", priority_map={"attributes": {"price": "low"}})]
    return [
        (key, serde.encode_embedding("Job", job, "mutation", encoded, topic=topics.job_topic(p)))
        for p, key, job in fanout.jobs_for(mutation, targets)
    ]


def test_a_creation_is_read_without_its_changes_and_makes_the_same_jobs() -> None:
    serde = Serde()
    created = {
        **mutation("m-create"),
        "operation": "create",
        "changes": [
            {**DESCRIPTION, "locale": "en_US", "scope": None, "added": None, "removed": None}
        ],
    }
    encoded = serde.encode("Mutation", created, topic=topics.MUTATIONS)
    view = _fanout_view(serde, encoded)
    assert view == {
        "mutation_id": "m-create",
        "entity_type": "product",
        "entity_key": "product:abc",
        "operation": "create",
        "changes": [],
    }
    full = serde.decode("Mutation", encoded, topic=topics.MUTATIONS)
    assert _jobs(serde, view, encoded) == _jobs(serde, full, encoded)
    # And each job carries the whole mutation, changes included.
    _, job = _jobs(serde, view, encoded)[0]
    assert serde.decode("Job", job)["mutation"] == full


def test_an_update_is_read_whole_since_its_changes_pick_the_priority() -> None:
    serde = Serde()
    encoded = serde.encode("Mutation", mutation("m-update"), topic=topics.MUTATIONS)
    view = _fanout_view(serde, encoded)
    assert view == serde.decode("Mutation", encoded, topic=topics.MUTATIONS)
    # The price change sends integration a's job to the immediate lane.
    jobs = [serde.decode("Job", j) for _, j in _jobs(serde, view, encoded)]
    assert [(j["integration_id"], j["priority"]) for j in jobs] == [
        ("a", "immediate"),
        ("b", "low"),
    ]
