"""Topic names and the topic catalogue (partitions, retention, cleanup policy)."""

from __future__ import annotations

from dataclasses import dataclass, field

RAW_EVENTS = "pim.raw-events"
SNAPSHOTS = "pim.snapshots"
# Snapshots of bulk loads (`hub sync`): the mutator reads them only when no live snapshot of
# pim.snapshots waits, so a catalogue load does not hold up a price or stock change.
SNAPSHOTS_BULK = "pim.snapshots.bulk"
SNAPSHOTS_INVALID = "pim.snapshots.invalid"
# Producers' patches (pim_hub.schemas.ownership): Avro, and JSON for teams without Avro.
PATCHES = "pim.patches"
PATCHES_JSON = "pim.patches.json"
MUTATIONS = "hub.mutations"
JOBS_IMMEDIATE = "hub.jobs.immediate"
JOBS_NORMAL = "hub.jobs.normal"
JOBS_LOW = "hub.jobs.low"
JOBS_DEAD = "hub.jobs.dead"
DELIVERY_STATUS = "hub.delivery-status"
INTEGRATIONS = "hub.integrations"

#: priority name -> (number, topic); a lower number is a higher priority.
PRIORITIES: dict[str, tuple[int, str]] = {
    "immediate": (0, JOBS_IMMEDIATE),
    "normal": (5, JOBS_NORMAL),
    "low": (9, JOBS_LOW),
}

#: The priority of bulk work (replays and resyncs): no live change waits for its lane.
BULK_PRIORITY = "low"

#: retry tiers: topic -> delay in seconds before a job on it is tried again.
RETRY_DELAYS_S: tuple[int, ...] = (30, 300, 1800)

DAY_MS = 24 * 3600 * 1000


def job_topic(priority: str) -> str:
    """The jobs topic of a priority name."""
    try:
        return PRIORITIES[priority][1]
    except KeyError as exc:
        raise ValueError(f"unknown priority {priority!r}; known: {', '.join(PRIORITIES)}") from exc


def retry_topic(delay_s: int) -> str:
    """The retry topic of a delay tier, e.g. hub.jobs.retry.30s."""
    return f"hub.jobs.retry.{delay_s}s"


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the catalogue."""

    name: str
    partitions: int
    retention_ms: int  # -1 keeps forever
    cleanup_policy: str = "delete"
    doc: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        """The topic configs `hub topics apply` sets."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.extra,
        }


def catalogue(
    partitions: int = 6,
    mutations_retention_ms: int = 365 * DAY_MS,
    retry_delays: tuple[int, ...] | list[int] = RETRY_DELAYS_S,
) -> list[TopicSpec]:
    """Every topic the hub uses. Entity-keyed topics share a partition count so keys line up."""
    week = 7 * DAY_MS
    specs = [
        TopicSpec(RAW_EVENTS, partitions, week, doc="Akeneo events as received (JSON)"),
        TopicSpec(SNAPSHOTS, partitions, week, doc="entity snapshots (Avro Snapshot)"),
        # Same partition count as pim.snapshots: one key is on the same partition of both,
        # so the mutator's table (co-partitioned with both) sees an entity's snapshots.
        TopicSpec(
            SNAPSHOTS_BULK,
            partitions,
            week,
            doc="entity snapshots of bulk loads, read after the live ones (Avro Snapshot)",
        ),
        TopicSpec(SNAPSHOTS_INVALID, 1, 30 * DAY_MS, doc="snapshots that failed validation"),
        TopicSpec(PATCHES, partitions, week, doc="producers' patches by identifier (Avro Patch)"),
        TopicSpec(
            PATCHES_JSON, partitions, week, doc="producers' patches by identifier (JSON Patch)"
        ),
        # The replayable log: time retention only, never compacted, so every change stays.
        TopicSpec(
            MUTATIONS, partitions, mutations_retention_ms, doc="the mutation log (Avro Mutation)"
        ),
        *(
            TopicSpec(topic, partitions, week, doc=f"jobs of priority {name} (Avro Job)")
            for name, (_, topic) in PRIORITIES.items()
        ),
        *(
            TopicSpec(retry_topic(d), partitions, week, doc=f"jobs waiting {d}s before a retry")
            for d in retry_delays
        ),
        TopicSpec(JOBS_DEAD, partitions, 90 * DAY_MS, doc="dead letters with their reason"),
        TopicSpec(
            DELIVERY_STATUS, partitions, 30 * DAY_MS, doc="delivery outcomes (Avro DeliveryStatus)"
        ),
        TopicSpec(
            INTEGRATIONS, 1, -1, cleanup_policy="compact", doc="integration registry changes"
        ),
    ]
    return specs
