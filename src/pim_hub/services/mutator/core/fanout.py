"""Fan-out: which integrations get a job for a mutation, on which priority, with which id."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pim_hub.registry.model import IntegrationTarget
from pim_hub.registry.priority import DEFAULT_LEVELS, PriorityRules, resolve_priority

NS_JOB = uuid.UUID("7d1c3c1e-4f0b-5a53-9a8e-2f0a0d6b9c11")


@dataclass(frozen=True)
class PlannedJob:
    """One job to publish."""

    job_id: str
    integration_id: str
    driver: str
    priority: str


def job_id(mutation_id: str, integration_id: str) -> str:
    """Deterministic job id: duplicates and replays of a mutation never make a second job."""
    return str(uuid.uuid5(NS_JOB, f"{mutation_id}/{integration_id}"))


def plan_priorities(
    entity_type: str,
    operation: str,
    changes: Sequence[Mapping[str, Any]],
    integrations: Iterable[IntegrationTarget],
    rules: PriorityRules,
    levels: Mapping[str, int] = DEFAULT_LEVELS,
) -> list[tuple[IntegrationTarget, str]]:
    """(integration, priority) of each job a mutation makes; see plan_jobs.

    What a dry run counts: the jobs without their ids (a uuid5 each).
    """
    planned = []
    seen: set[str] = set()
    for integ in sorted(integrations, key=lambda i: i.integration_id):
        if integ.integration_id in seen:
            continue  # one integration listed twice must still get one job
        supported = integ.supported_entity_types
        if not integ.enabled or (supported is not None and entity_type not in supported):
            continue
        if integ.entity_types is not None and entity_type not in integ.entity_types:
            continue
        priority = resolve_priority(
            entity_type, operation, changes, rules.merged(integ.priority_map), levels
        )
        seen.add(integ.integration_id)
        planned.append((integ, priority))
    return planned


def plan_jobs(
    entity_type: str,
    operation: str,
    mutation_id: str,
    changes: Sequence[Mapping[str, Any]],
    integrations: Iterable[IntegrationTarget],
    rules: PriorityRules,
    levels: Mapping[str, int] = DEFAULT_LEVELS,
) -> list[PlannedJob]:
    """One job per enabled integration whose driver and filter accept the entity type.

    Args:
        entity_type: the mutation's entity type.
        operation: create, update or delete.
        mutation_id: the mutation's deterministic id.
        changes: the mutation's change records.
        integrations: every known integration (disabled ones are skipped).
        rules: the default priority rules (each integration's priority_map is laid over them).
        levels: priority name -> number.

    Returns:
        The jobs, at most one per integration id, in integration id order.
    """
    return [
        PlannedJob(job_id(mutation_id, integ.integration_id), integ.integration_id, integ.driver, p)
        for integ, p in plan_priorities(
            entity_type, operation, changes, integrations, rules, levels
        )
    ]


def job_key(integration_id: str, entity_key: str) -> str:
    """Kafka key of a job: one entity keeps its order per integration."""
    return f"{integration_id}|{entity_key}"


def previous_jobs(
    prev_mutation: tuple[str, int] | None, integrations: Iterable[IntegrationTarget]
) -> dict[str, tuple[str, int]]:
    """Integration id -> (job id, epoch ms made) of the job each job of a mutation must not
    overtake.

    `prev_mutation`: (id, created_at in epoch ms) of the entity's previous mutation, as the
    mutator names it. Every mutation of an entity type goes to every integration taking that
    type, so that mutation made the job `job_id(prev, integration)`, unless the integration
    was written since (added, enabled, its entity types changed): then no job is named, as it
    may never have existed (a dispatcher would wait for it for the whole order hold).
    """
    if prev_mutation is None:
        return {}
    mutation_id, made_ms = prev_mutation
    return {
        integ.integration_id: (job_id(mutation_id, integ.integration_id), made_ms)
        for integ in integrations
        if integ.active_since_ms is None or made_ms >= integ.active_since_ms
    }
