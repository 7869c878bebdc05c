"""Producers' patches by identifier (SKU) or code, resolved to entity keys for the mutator.

Reads `pim.patches` (Avro Patch) and `pim.patches.json` (JSON, checked against
`patch.schema.json`), checks the source and the ownership of every field it touches,
resolves the identifier to the entity key (products through the local model's identifier,
the ID bridge of sources; other types are keyed by their code) and publishes the patch to
`pim.snapshots` as a Snapshot whose delta carries it, keyed by the entity, where the
mutator merges it into the stored state. A patch for a product the hub has not seen yet
waits up to HUB_PATCHES_WAIT_S for it; a refused patch goes to `pim.snapshots.invalid`
with its reason. Offsets are committed only after the outputs are acknowledged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Protocol

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from pim_hub.runtime import metrics
from pim_hub.runtime.health import HEALTH
from pim_hub.runtime.kafka import Headers, consume_ready, consumer_config, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.entities import ENTITY_TYPES
from pim_hub.schemas.errors import SchemaError
from pim_hub.schemas.ownership import (
    PatchRefused,
    check_ownership,
    parse_patch_body,
    patch_delta,
)
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.versions import parse_version
from pim_hub.services.patches.settings import PatchSettings

logger = logging.getLogger(__name__)

PATCH_JSON_SCHEMA = "avro/v1/patch.schema.json"


@cache
def json_validator() -> Callable[[Any], Any]:
    """The compiled JSON Schema of JSON patches (shipped next to patch.avsc)."""
    import fastjsonschema

    text = resources.files("pim_hub.schemas").joinpath(PATCH_JSON_SCHEMA).read_text()
    validate: Callable[[Any], Any] = fastjsonschema.compile(json.loads(text))
    return validate


@dataclass(frozen=True)
class Patch:
    """One decoded, checked patch."""

    event_id: str
    source: str
    entity_type: str
    identifier: str
    mode: str
    version: str | None
    payload: dict[str, Any]
    received_at: datetime
    correlation_id: str | None


def _checked(record: dict[str, Any], payload: Any) -> Patch:
    if record["entity_type"] not in ENTITY_TYPES:
        raise PatchRefused(f"unknown entity type {record['entity_type']!r}", "bad_patch")
    if not isinstance(payload, dict):
        raise PatchRefused("payload must be a JSON object", "bad_patch")
    version = record.get("version")
    if version is not None:
        try:
            parse_version(version)
        except (ValueError, TypeError, SchemaError) as exc:
            raise PatchRefused(
                f"version {version!r} is not ISO 8601: {exc}", "bad_version"
            ) from exc
    received = record.get("received_at")
    if isinstance(received, int):
        received = datetime.fromtimestamp(received / 1000, UTC)
    return Patch(
        event_id=str(record["event_id"]),
        source=str(record["source"]),
        entity_type=str(record["entity_type"]),
        identifier=str(record["identifier"]),
        mode=str(record.get("mode") or "patch"),
        version=version,
        payload=payload,
        received_at=received if isinstance(received, datetime) else datetime.now(UTC),
        correlation_id=record.get("correlation_id"),
    )


def decode_avro(serde: Serde, value: bytes | None) -> Patch:
    """A Patch from an Avro record of pim.patches."""
    try:
        record = serde.decode("Patch", value, topic=topics.PATCHES)
    except SchemaError as exc:
        raise PatchRefused(str(exc), "bad_schema") from exc
    try:
        payload = orjson.loads(record["payload"])
    except orjson.JSONDecodeError as exc:
        raise PatchRefused(f"payload is not JSON: {exc}", "bad_json") from exc
    return _checked(record, payload)


def decode_json(value: bytes | None) -> Patch:
    """A Patch from a JSON record of pim.patches.json, checked against its JSON Schema."""
    import fastjsonschema

    try:
        record = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise PatchRefused(f"not JSON: {exc}", "bad_json") from exc
    try:
        json_validator()(record)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise PatchRefused(
            f"does not match patch.schema.json: {exc.message}", "bad_schema"
        ) from exc
    return _checked(record, record["payload"])


class Resolver(Protocol):
    """Finds the entity key of an identifier (None: the hub has not seen it)."""

    def __call__(self, entity_type: str, identifier: str) -> str | None:
        """The entity key, or None."""


class ModelResolver:
    """Products by identifier from the local model (`hub entities project`); codes as keys."""

    QUERY = (
        "SELECT entity_key FROM entities WHERE entity_type = 'product' AND code = %s "
        "AND NOT deleted ORDER BY mutated_at DESC LIMIT 1"
    )

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None

    def __call__(self, entity_type: str, identifier: str) -> str | None:
        """The entity key of an identifier, or None while the model does not have it."""
        if entity_type != "product":
            return f"{entity_type}:{identifier}"
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        row = self._conn.execute(self.QUERY, (identifier,)).fetchone()
        return str(row[0]) if row else None

    def close(self) -> None:
        """Close its connection (a one-off check, such as a redrive's, ends with it)."""
        if self._conn is not None:
            self._conn.close()


def snapshot_record(patch: Patch, entity_key: str) -> dict[str, Any]:
    """The Snapshot that carries a patch to the mutator (delta: pim_hub.schemas.ownership)."""
    delta = patch_delta(patch.source, patch.mode, patch.identifier, patch.payload)  # type: ignore[arg-type]
    return {
        "event_id": patch.event_id,
        "entity_type": patch.entity_type,
        "entity_key": entity_key,
        "source_version": patch.version,
        "origin": "external",
        "payload": None,
        "delta": orjson.dumps(delta).decode(),
        "received_at": patch.received_at,
        "correlation_id": patch.correlation_id or patch.event_id,
    }


def refused_headers(exc: PatchRefused, topic: str) -> Headers:
    """Headers of a refused patch on the invalid topic."""
    return [
        ("error.type", b"invalid_patch"),
        ("error.reason", exc.code.encode()),
        ("error.message", str(exc).encode(errors="backslashreplace")[:4000]),
        ("source.topic", topic.encode()),
    ]


@dataclass
class PatchOutcome:
    """What one patch came to: a snapshot to publish, or a refusal."""

    kind: str  # snapshot | refused
    key: str | None = None
    snapshot: dict[str, Any] | None = None
    refused: PatchRefused | None = None


class PatchService:
    """The consume -> check -> resolve -> publish loop."""

    def __init__(
        self,
        settings: Settings,
        resolver: Resolver | None = None,
        patch_settings: PatchSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.conf = patch_settings or PatchSettings.from_settings(settings)
        self.resolver = resolver or ModelResolver(settings.require_database())
        self.serde = Serde(settings.registry_config())
        self.sleep = sleep
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the record in hand and leave."""
        self._stop.set()

    def decide(self, topic: str, value: bytes | None, wait: bool = True) -> PatchOutcome:
        """Decode, check and resolve one patch; never raises for bad input.

        Args:
            wait: wait up to HUB_PATCHES_WAIT_S for an unseen entity (False: look once, as
                `hub invalid redrive` does before it publishes a refused patch again).
        """
        try:
            patch = (
                decode_json(value)
                if topic == topics.PATCHES_JSON
                else decode_avro(self.serde, value)
            )
            check_ownership(self.conf.ownership, patch.source, parse_patch_body(patch.payload))
            if patch.mode not in ("patch", "replace"):
                raise PatchRefused(f"unknown mode {patch.mode!r}", "bad_patch")
            key = self._resolve(patch, self.conf.wait_s if wait else 0.0)
        except PatchRefused as exc:
            return PatchOutcome("refused", refused=exc)
        return PatchOutcome("snapshot", key, snapshot_record(patch, key))

    def _resolve(self, patch: Patch, wait_s: float) -> str:
        deadline = time.monotonic() + wait_s
        while True:
            key = self.resolver(patch.entity_type, patch.identifier)
            if key is not None:
                return key
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                raise PatchRefused(
                    f"no {patch.entity_type} with identifier {patch.identifier!r} after "
                    f"{wait_s:g} s (HUB_PATCHES_WAIT_S): a patch changes an entity "
                    "the hub has; send it again once the entity exists",
                    "unseen_entity",
                )
            self.sleep(min(1.0, remaining))

    def publish(self, producer: Producer, msg: Message, outcome: PatchOutcome) -> None:
        """Queue the outcome of one record: its snapshot, or its refusal with the reason."""
        topic = msg.topic() or "?"
        if outcome.kind == "snapshot":
            assert outcome.snapshot is not None and outcome.key is not None
            value = self.serde.encode("Snapshot", outcome.snapshot, topic=topics.SNAPSHOTS)
            producer.produce(topics.SNAPSHOTS, value, outcome.key.encode())
            return
        assert outcome.refused is not None
        metrics.RECORDS_SET_ASIDE.labels("patches", outcome.refused.code).inc()
        logger.warning(
            "patch refused",
            extra={
                "topic": topic,
                "partition": msg.partition(),
                "offset": msg.offset(),
                "reason": outcome.refused.code,
            },
        )
        producer.produce(
            topics.SNAPSHOTS_INVALID,
            msg.value(),
            msg.key(),
            headers=refused_headers(outcome.refused, topic),
        )

    def run(self) -> None:
        """Serve until stop(): at-least-once, offsets committed after acknowledgements."""
        metrics.start_from_env(
            "patches",
            kafka=self.settings.kafka_config(),
            database_url=self.settings.database_url,
            group=self.conf.group,
        )
        consumer = Consumer(consumer_config(self.settings, self.conf.group))
        producer = make_producer(self.settings)
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        def on_assign(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            HEALTH.set("assigned", True, f"{len(partitions)} partition(s) of the patch topics")

        consumer.subscribe([topics.PATCHES, topics.PATCHES_JSON], on_assign=on_assign)
        try:
            while not self._stop.is_set():
                # A patch may wait HUB_PATCHES_WAIT_S for its entity: that is not a hang.
                HEALTH.beat(self.conf.group, 60.0 + self.conf.wait_s)
                batch = consume_ready(consumer, 200, 0.2)  # a lone patch goes at once
                messages = [m for m in batch if m.error() is None]
                if not messages:
                    continue
                for msg in messages:
                    outcome = self.decide(msg.topic() or "", msg.value())
                    self.publish(producer, msg, outcome)
                    producer.poll(0)
                producer.flush(30)
                if failures or len(producer) > 0:
                    # Not acknowledged: leave without committing, the batch is read again.
                    raise RuntimeError(f"outputs not acknowledged: {failures[:1]}")
                ends: dict[tuple[str, int], int] = {}
                for msg in messages:
                    tp = (msg.topic() or "", msg.partition() or 0)
                    ends[tp] = max(ends.get(tp, 0), (msg.offset() or 0) + 1)
                consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()],
                    asynchronous=False,
                )
                logger.info("patches handled", extra={"count": len(messages)})
        finally:
            consumer.close()
            HEALTH.forget(self.conf.group)
