"""What each topic of the catalogue carries: key, value schema, who writes and reads it.

The topic catalogue (pim_hub.schemas.topics) says how a topic is kept; this says what flows
through it. `hub schemas register` registers each Avro value under `<topic>-value`, and
`scripts/asyncapi.py` writes docs/asyncapi.yaml from both.
"""

from __future__ import annotations

from dataclasses import dataclass

from pim_hub.schemas import topics

#: The guarantees every hub producer gives (docs: README, Guarantees).
PRODUCER_GUARANTEES = (
    "acks=all with idempotence: an acknowledged record is never lost or doubled; one key "
    "always goes to one partition (murmur2), so records of one entity stay in order"
)


@dataclass(frozen=True)
class TopicContract:
    """The record contract of one topic."""

    key: str
    value: str  # an Avro event name of pim_hub.schemas.serde.EVENTS, or "json" / "bytes"
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    guarantees: str = PRODUCER_GUARANTEES

    @property
    def avro(self) -> bool:
        """True when the value is an Avro event of the hub."""
        return self.value not in ("json", "bytes")


ENTITY_KEY = "the entity key, UTF-8: `<entity_type>:<code or uuid>`"
JOB_KEY = "the job's entity key, UTF-8 (one entity's jobs stay in order)"

_JOBS = TopicContract(
    JOB_KEY,
    "Job",
    ("hub mutator --role fanout", "hub dispatcher (retries)", "hub replay", "hub dead redrive"),
    ("hub dispatcher --priority <p>",),
    PRODUCER_GUARANTEES
    + "; header pimhub.prev-job (`<job id> <epoch ms>`) names the job of the same entity and"
    " integration this one must not overtake, whatever its lane (docs/delivery-semantics.md)",
)

CONTRACTS: dict[str, TopicContract] = {
    topics.RAW_EVENTS: TopicContract(
        "the entity key of the event, UTF-8",
        "json",
        ("hub ingest web", "Akeneo Event Platform (Kafka destination)"),
        ("hub ingest enrich",),
    ),
    topics.SNAPSHOTS: TopicContract(
        ENTITY_KEY,
        "Snapshot",
        ("hub ingest enrich", "outside producers (docs/producers.md)"),
        ("hub mutator --role mutate",),
    ),
    topics.SNAPSHOTS_BULK: TopicContract(
        ENTITY_KEY,
        "Snapshot",
        ("hub sync akeneo",),
        ("hub mutator --role mutate",),
    ),
    topics.SNAPSHOTS_INVALID: TopicContract(
        "the key of the refused record, as it came",
        "bytes",
        ("hub mutator", "hub patches"),
        ("operators (hub trace)",),
        "the refused record as it came, with headers error.type and error.message",
    ),
    topics.PATCHES: TopicContract(
        "`<entity_type>:<identifier>`, UTF-8 (one entity's patches stay in order)",
        "Patch",
        ("outside producers: ERP, pricing (docs/producers.md)",),
        ("hub patches",),
    ),
    topics.PATCHES_JSON: TopicContract(
        "`<entity_type>:<identifier>`, UTF-8",
        "json",
        ("outside producers without Avro (docs/producers.md)",),
        ("hub patches",),
        PRODUCER_GUARANTEES + "; values are checked against schemas/avro/v1/patch.schema.json",
    ),
    topics.MUTATIONS: TopicContract(
        ENTITY_KEY,
        "Mutation",
        ("hub mutator --role mutate",),
        ("hub mutator --role fanout", "hub entities project", "hub replay"),
        PRODUCER_GUARANTEES
        + "; header pimhub.prev-mutation (`<mutation id> <epoch ms>`) names the entity's"
        " previous mutation (docs/delivery-semantics.md)",
    ),
    **{topic: _JOBS for _, topic in topics.PRIORITIES.values()},
    topics.JOBS_DEAD: TopicContract(
        JOB_KEY,
        "Job",
        ("hub dispatcher",),
        ("hub dead list|redrive",),
        PRODUCER_GUARANTEES + "; headers carry the reason",
    ),
    topics.DELIVERY_STATUS: TopicContract(
        JOB_KEY, "DeliveryStatus", ("hub dispatcher",), ("hub projector",)
    ),
    topics.INTEGRATIONS: TopicContract(
        "the integration id",
        "json",
        ("hub integrations (CLI and registry API)",),
        ("hub mutator --role fanout", "hub dispatcher"),
        "compacted: the latest record per integration id is its current definition",
    ),
}

RETRY_PREFIX = "hub.jobs.retry."


def contract(topic: str) -> TopicContract:
    """The contract of a catalogue topic (retry tiers share the job topics')."""
    if topic in CONTRACTS:
        return CONTRACTS[topic]
    if topic.startswith(RETRY_PREFIX):
        return _JOBS
    raise KeyError(f"no contract for topic {topic!r}")


def value_subject(topic: str) -> str:
    """The Schema Registry subject of a topic's values (TopicNameStrategy)."""
    return f"{topic}-value"
