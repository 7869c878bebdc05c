"""`hub resync`: push the current full state of every entity (or one type) to one integration.

Each entity becomes one job of mode "resync" whose mutation is a `create` carrying every field
as a change (what the diff gives against nothing). Deleted entities are not sent. The state
comes from the local entity model in PostgreSQL when its projector has read the whole
mutation log (group `hub.projector.entities` without lag); otherwise from hub.mutations, read
to its end, keeping the last state of each key. Resync jobs obey the version guard like live
ones; their ids are new per run (see pim_hub.ops.replay.rerun_job_id). They go to the bulk
lane (`low`) unless `priority` says otherwise: fan-out ranks a creation by its entity type
(`normal` for products), so a resync of a catalogue would otherwise queue ahead of the live
edits on that lane (see pim_hub.ops.replay, "Lanes").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import psycopg

from pim_hub.ops.dispatchers import BULK_PRIORITY
from pim_hub.ops.offsets import describe_group
from pim_hub.ops.replay import (
    EntityFilter,
    JobPublisher,
    Pacer,
    Progress,
    ReplayError,
    RunReport,
    load_targets,
    new_run_id,
    rerun_job_id,
    resolve_priority,
)
from pim_hub.registry.model import IntegrationTarget
from pim_hub.runtime.logread import (
    OffsetsError,
    ephemeral_consumer,
    log_bounds,
    partitions_of,
    scan,
)
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.errors import PermanentError, SchemaError
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.versions import compare_versions
from pim_hub.services.mutator.core import diffing
from pim_hub.services.mutator.processing import fanout_for

logger = logging.getLogger(__name__)

#: The entity projector's group (pim_hub.services.projections.entities.GROUP).
MODEL_GROUP = "hub.projector.entities"

Source = Literal["auto", "model", "log"]


@dataclass(frozen=True)
class EntityState:
    """The latest known state of one entity."""

    entity_type: str
    entity_key: str
    state: dict[str, Any]
    version: str | None


def latest_states(mutations: Iterable[dict[str, Any]]) -> dict[str, EntityState | None]:
    """Fold mutations (in log order per key) into the last state per key; None: deleted.

    A mutation whose version is older than the one kept is ignored, as the mutator would.
    """
    out: dict[str, EntityState | None] = {}
    versions: dict[str, str | None] = {}
    for m in mutations:
        key = m["entity_key"]
        if key in versions:
            try:
                order = compare_versions(m.get("version"), versions[key])
            except PermanentError:
                order = None
            if order == -1:
                continue
        versions[key] = m.get("version")
        if m["operation"] == "delete" or m.get("state") is None:
            out[key] = None
            continue
        state = m["state"]
        out[key] = EntityState(
            m["entity_type"],
            key,
            orjson.loads(state) if isinstance(state, str | bytes) else state,
            m.get("version"),
        )
    return out


def full_state_mutation(entity: EntityState, run_id: str, now: datetime) -> dict[str, Any]:
    """A `create` mutation with every field of the state as a change.

    Raises:
        PermanentError: the stored state is not a valid payload of its type.
    """
    decision = diffing.decide(
        entity.entity_type, entity.entity_key, None, entity.state, entity.version
    )
    if decision.kind != "mutation" or decision.mutation_id is None:
        raise ReplayError(f"{entity.entity_key}: no full state ({decision.kind})")
    return {
        "mutation_id": decision.mutation_id,
        "entity_type": entity.entity_type,
        "entity_key": entity.entity_key,
        "operation": "create",
        "changes": [diffing.change_to_record(c) for c in decision.changes],
        "state": orjson.dumps(decision.state_payload).decode(),
        "version": entity.version,
        "causation_id": f"resync:{run_id}",
        "correlation_id": f"resync:{run_id}",
        "origin": "resync",
        "source_received_at": now,
        "created_at": now,
    }


def model_is_current(settings: Settings) -> tuple[bool, str]:
    """Whether the entity model has projected the whole mutation log, and why (not)."""
    try:
        view = describe_group(settings, MODEL_GROUP, [topics.MUTATIONS])
    except OffsetsError as exc:
        return False, str(exc)
    behind = [p for p in view.partitions if p.end > p.start and (p.committed or 0) < p.end]
    if behind:
        return False, f"entity projector behind by {view.total_lag} mutation(s)"
    return True, "entity projector up to date"


def states_from_model(url: str, flt: EntityFilter) -> Iterator[EntityState]:
    """Live entities of the PostgreSQL model that pass the filter, by key."""
    sql = "SELECT entity_type, entity_key, state, version FROM entities WHERE NOT deleted"
    params: list[Any] = []
    if flt.entity_types is not None:
        sql += " AND entity_type = ANY(%s)"
        params.append(sorted(flt.entity_types))
    sql += " ORDER BY entity_key"
    with psycopg.connect(url) as conn, conn.cursor(name="hub_resync") as cur:
        cur.execute(sql, params)
        for etype, key, state, version in cur:
            if state is None or not flt.matches(key):
                continue
            yield EntityState(etype, key, state, version.isoformat() if version else None)


def states_from_log(
    settings: Settings, flt: EntityFilter, serde: Serde, report: RunReport
) -> list[EntityState]:
    """Read hub.mutations to its end and keep the last state of each matching key."""
    consumer = ephemeral_consumer(settings, "resync")
    try:
        parts = partitions_of(consumer, topics.MUTATIONS)
        bounds = log_bounds(consumer, [(topics.MUTATIONS, p) for p in parts])

        def mutations() -> Iterator[dict[str, Any]]:
            for msg in scan(consumer, bounds):
                raw = msg.key()
                if raw is not None and not flt.matches(raw.decode(errors="replace")):
                    continue
                try:
                    m = serde.decode("Mutation", msg.value(), topic=topics.MUTATIONS)
                except SchemaError as exc:
                    report.invalid.append(
                        f"{topics.MUTATIONS}[{msg.partition()}]@{msg.offset()}: {exc}"
                    )
                    continue
                if flt.matches(m["entity_key"]):
                    yield m

        latest = latest_states(mutations())
    finally:
        consumer.close()
    return [s for _, s in sorted(latest.items()) if s is not None]


def resync(
    settings: Settings,
    integration: str,
    flt: EntityFilter,
    *,
    source: Source = "auto",
    dry_run: bool = False,
    rate: float = 0.0,
    run_id: str | None = None,
    progress: Progress | None = None,
    target: IntegrationTarget | None = None,
    priority: str = BULK_PRIORITY,
) -> RunReport:
    """Publish one full-state job per live entity to one integration (or count them).

    `priority`: the priority of every job, or `keep` for the one fan-out gives it.

    Raises:
        ReplayError: unknown or disabled integration, unknown priority, jobs not acknowledged.
    """
    from pim_hub.registry.queue_map import queue_map_from_settings

    queue_map = queue_map_from_settings(settings)
    lane = resolve_priority(priority, queue_map.levels)
    chosen = target or load_targets(settings, [integration])[0]
    report = RunReport(run_id or new_run_id(), "resync", dry_run, lane=lane)
    serde = Serde(settings.registry_config())
    fanout = fanout_for(queue_map, serde)
    if source == "auto":
        current, why = model_is_current(settings)
        source = "model" if current else "log"
        logger.info("resync source chosen", extra={"source": source, "reason": why})
    states: Iterable[EntityState]
    if source == "model":
        states = list(states_from_model(settings.require_database(), flt))
    else:
        states = states_from_log(settings, flt, serde, report)
    report.source = f"from the {'entity model' if source == 'model' else 'mutation log'}"
    states = list(states)
    if progress is not None:
        progress.start(len(states))
    publisher = None if dry_run else JobPublisher(settings, serde, queue_map.topic)
    pacer = Pacer(rate)
    now = datetime.now(UTC)
    for entity in states:
        report.read += 1
        if progress is not None:
            progress.advance(1)
        try:
            mutation = full_state_mutation(entity, report.run_id, now)
        except (PermanentError, ReplayError) as exc:
            report.invalid.append(f"{entity.entity_key}: {exc}")
            logger.error("entity not resynced", extra={"entity_key": entity.entity_key})
            continue
        report.matched += 1
        for fanned, job_key, job in fanout.jobs_for(mutation, [chosen], mode="resync"):
            lane_of_job = report.route(fanned, job)
            job["job_id"] = rerun_job_id(
                mutation["mutation_id"], chosen.integration_id, report.run_id
            )
            report.jobs[(chosen.integration_id, lane_of_job)] += 1
            if publisher is not None:
                pacer.wait()
                publisher.publish(lane_of_job, job_key, job)
    if publisher is not None:
        publisher.close()
    return report
