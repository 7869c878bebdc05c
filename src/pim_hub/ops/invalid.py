"""Set-aside records: what the hub refused, why, and publishing a fixed one again.

`pim.snapshots.invalid` holds four kinds of records, each with its reason in the headers
(`error.type`, `error.message`):

- snapshots the mutator refused (the Avro Snapshot as it arrived; `entity_type` header),
- raw events the enricher could not read (Akeneo's JSON; `source.topic`, `source.offset`),
- resources a REST sync could not turn into a snapshot (Akeneo's JSON),
- producers' patches the patch service refused (`error.type=invalid_patch`, the Avro or JSON
  Patch as it came; `source.topic` names the patches topic it came from).

`read` lists them, `get` reads one by its position, `redrive` validates a (fixed) payload with
the mutator's own rules and publishes it to `pim.snapshots` as a new snapshot; a patch goes
back to its patches topic after the patch service's own checks (`redrive_patch`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Message

from pim_hub.runtime.logread import ephemeral_consumer, log_bounds, partitions_of, scan
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.entities import ENTITY_TYPES, entity_key
from pim_hub.schemas.errors import PermanentError, SchemaError
from pim_hub.schemas.serde import Serde

#: `error.type` of a producer's patch the patch service refused.
INVALID_PATCH = "invalid_patch"
#: The topics patches come from (`source.topic` of a refused patch).
PATCH_TOPICS: tuple[str, ...] = (topics.PATCHES, topics.PATCHES_JSON)

#: Topics of records the hub set aside with a reason (dead jobs have `hub dead`).
SET_ASIDE_TOPICS: tuple[str, ...] = (topics.SNAPSHOTS_INVALID,)


class InvalidRecordError(PermanentError):
    """A set-aside record that cannot be found or redriven as asked."""


@dataclass
class InvalidRecord:
    """One set-aside record and what the hub knows of it."""

    topic: str
    partition: int
    offset: int
    at: datetime
    key: str | None
    error_type: str
    reason: str
    headers: dict[str, str]
    #: the short reason code, when the stage gave one (the mutator's `error.reason`)
    code: str | None
    #: snapshot (a refused Snapshot record), patch (a refused producer's patch),
    #: json (an Akeneo event or resource) or bytes
    kind: str
    entity_type: str | None = None
    snapshot: dict[str, Any] | None = field(default=None, repr=False)
    body: Any = field(default=None, repr=False)
    #: a refused patch as it came (its `payload` parsed when it is JSON text)
    patch: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def source_topic(self) -> str | None:
        """The topic the record was read from before it was set aside, when it says."""
        return self.headers.get("source.topic") or None

    @property
    def id(self) -> str:
        """`PARTITION:OFFSET`, how `hub invalid show|redrive` name it."""
        return f"{self.partition}:{self.offset}"

    def payload(self) -> Any:
        """The entity payload it carries: the snapshot's payload, or the JSON resource."""
        if self.snapshot is not None:
            text = self.snapshot.get("payload")
            return orjson.loads(text) if text is not None else None
        if (
            isinstance(self.body, dict)
            and "event_id" not in self.body
            and "specversion" not in (self.body)
        ):
            return self.body
        return None

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly row for listings."""
        return {
            "id": self.id,
            "topic": self.topic,
            "at": self.at.isoformat(),
            "key": self.key,
            "entity_type": self.entity_type,
            "kind": self.kind,
            "error_type": self.error_type,
            "code": self.code,
            "reason": self.reason,
            "source_topic": self.source_topic,
        }

    def detail(self) -> dict[str, Any]:
        """Everything, for `hub invalid show`."""
        out = self.summary()
        out["headers"] = self.headers
        if self.snapshot is not None:
            snap = dict(self.snapshot)
            for text_field in ("payload", "delta"):
                if snap.get(text_field) is not None:
                    try:
                        snap[text_field] = orjson.loads(snap[text_field])
                    except orjson.JSONDecodeError:
                        pass  # shown as the text it was: that may be why it was refused
            out["snapshot"] = {
                k: v.isoformat() if isinstance(v, datetime) else v for k, v in snap.items()
            }
        elif self.patch is not None:
            out["patch"] = {
                k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.patch.items()
            }
        else:
            out["body"] = self.body
        return out


def _headers(msg: Message) -> dict[str, str]:
    raw = msg.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {
        k: v.decode(errors="replace") if isinstance(v, bytes) else str(v or "") for k, v in items
    }


def decode(msg: Message, serde: Serde) -> InvalidRecord:
    """What one set-aside record holds; never raises (undecodable values are shown as bytes)."""
    topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
    kind, ts = msg.timestamp()
    at = datetime.fromtimestamp(ts / 1000, UTC) if kind != 0 and ts >= 0 else datetime.now(UTC)
    headers = _headers(msg)
    raw_key = msg.key()
    key = raw_key.decode(errors="replace") if raw_key is not None else None
    value = msg.value() or b""
    record = InvalidRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        at=at,
        key=key,
        error_type=headers.get("error.type", "unknown"),
        reason=headers.get("error.message", "(no reason recorded)"),
        headers=headers,
        code=headers.get("error.reason") or None,
        kind="bytes",
        entity_type=headers.get("entity_type") or None,
    )
    if record.error_type == INVALID_PATCH and _decode_patch(record, value, serde):
        return record
    try:
        record.snapshot = serde.decode("Snapshot", value, topic=topics.SNAPSHOTS)
        record.kind = "snapshot"
        record.entity_type = record.snapshot["entity_type"]
        record.key = record.key or record.snapshot["entity_key"]
        return record
    except SchemaError:
        pass
    try:
        record.body = orjson.loads(value)
        record.kind = "json"
    except orjson.JSONDecodeError:
        record.body = value[:2000].decode(errors="replace")
    if record.entity_type in (None, "unknown"):
        record.entity_type = _key_type(record.key)
    return record


def decode_patch(topic: str | None, value: bytes, serde: Serde) -> dict[str, Any] | None:
    """A patch record of a patches topic (Avro on pim.patches, JSON on pim.patches.json), its
    `payload` parsed when it is JSON text; None when it cannot be read as one."""
    patch: Any
    try:
        if topic == topics.PATCHES_JSON:
            patch = orjson.loads(value)
        else:
            patch = serde.decode("Patch", value, topic=topics.PATCHES)
    except (SchemaError, orjson.JSONDecodeError):
        return None
    if not isinstance(patch, dict) or "identifier" not in patch:
        return None
    if isinstance(patch.get("payload"), str):
        try:
            patch["payload"] = orjson.loads(patch["payload"])
        except orjson.JSONDecodeError:
            pass  # shown as the text it was: that may be why it was refused
    return patch


def _decode_patch(record: InvalidRecord, value: bytes, serde: Serde) -> bool:
    patch = decode_patch(record.source_topic, value, serde)
    if patch is None:
        return False  # not even a patch: shown as JSON or bytes like any other record
    record.patch = patch
    record.kind = "patch"
    etype = patch.get("entity_type")
    record.entity_type = etype if etype in ENTITY_TYPES else _key_type(record.key)
    return True


def _key_type(key: str | None) -> str | None:
    etype = (key or "").partition(":")[0]
    return etype if etype in ENTITY_TYPES else None


def read(
    settings: Settings,
    topic: str = topics.SNAPSHOTS_INVALID,
    *,
    key_glob: str | None = None,
    error_type: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    serde: Serde | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[InvalidRecord]:
    """The set-aside records of a topic, oldest first (the last `limit` when given)."""
    serde = serde or Serde(settings.registry_config())
    consumer = ephemeral_consumer(settings, "invalid")
    found: list[InvalidRecord] = []
    try:
        bounds = log_bounds(consumer, [(topic, p) for p in partitions_of(consumer, topic)])
        for msg in scan(consumer, bounds, on_progress=on_progress):
            rec = decode(msg, serde)
            if key_glob and not fnmatch.fnmatchcase(rec.key or "", key_glob):
                continue
            if error_type and rec.error_type != error_type:
                continue
            if since is not None and rec.at < since:
                continue
            found.append(rec)
    finally:
        consumer.close()
    found.sort(key=lambda r: (r.at, r.partition, r.offset))
    return found[-limit:] if limit else found


def parse_id(text: str) -> tuple[int, int]:
    """`PARTITION:OFFSET` as two numbers.

    Raises:
        InvalidRecordError: not of that form.
    """
    part, sep, off = text.partition(":")
    if not sep or not part.isdigit() or not off.isdigit():
        raise InvalidRecordError(f"{text!r} is not PARTITION:OFFSET (see `hub invalid list`)")
    return int(part), int(off)


def get(settings: Settings, record_id: str, topic: str = topics.SNAPSHOTS_INVALID) -> InvalidRecord:
    """One set-aside record by its `PARTITION:OFFSET`.

    Raises:
        InvalidRecordError: no such record (never written, or removed by retention).
    """
    partition, offset = parse_id(record_id)
    serde = Serde(settings.registry_config())
    consumer = ephemeral_consumer(settings, "invalid")
    try:
        if partition not in partitions_of(consumer, topic):
            raise InvalidRecordError(f"{topic} has no partition {partition}")
        bounds = log_bounds(consumer, [(topic, partition)])
        low, high = bounds[(topic, partition)]
        if not low <= offset < high:
            raise InvalidRecordError(
                f"{topic}[{partition}] holds offsets {low}..{high - 1}, not {offset}"
            )
        for msg in scan(consumer, {(topic, partition): (offset, offset + 1)}):
            return decode(msg, serde)
    finally:
        consumer.close()
    raise InvalidRecordError(f"{topic}[{partition}]@{offset} could not be read")


@dataclass(frozen=True)
class Redriven:
    """Where a redriven snapshot went."""

    key: str
    topic: str
    partition: int
    offset: int


def redrive(
    settings: Settings,
    record: InvalidRecord,
    payload: Any = None,
    entity_type: str | None = None,
    version: str | None = None,
) -> Redriven:
    """Publish a set-aside record's payload (or a fixed one) to pim.snapshots as a new snapshot.

    The payload is checked with the mutator's own rules first; nothing is published when it
    would be refused again.

    Args:
        payload: the fixed entity (Akeneo JSON); None takes the record's own payload.
        entity_type: needed when the record does not say (a sync resource, a raw event).
        version: the source version; default the original snapshot's, else `updated`.

    A refused patch goes back to its patches topic instead (`redrive_patch`).

    Raises:
        InvalidRecordError: no payload or entity type to publish, or it is still invalid.
    """
    from pim_hub.runtime.kafka import make_producer, produce_sync
    from pim_hub.schemas.records import snapshot_record
    from pim_hub.services.mutator.processing import snapshot_problem

    if record.kind == "patch":
        return redrive_patch(settings, record, payload, version)
    payload = payload if payload is not None else record.payload()
    if not isinstance(payload, dict):
        raise InvalidRecordError(
            f"{record.id} carries no entity payload ({record.kind}): give the fixed entity "
            "as a JSON file"
        )
    etype = entity_type or record.entity_type
    if etype not in ENTITY_TYPES:
        raise InvalidRecordError(
            f"{record.id}: the entity type is not known ({etype!r}): give --entity-type"
        )
    try:
        key = entity_key(etype, payload)
    except PermanentError as exc:
        raise InvalidRecordError(f"still invalid: {exc}") from exc
    original = record.snapshot or {}
    if version is None:
        version = original.get("source_version") or payload.get("updated")
    problem = snapshot_problem(etype, key, payload, version, settings.version_max_future_s)
    if problem is not None:
        raise InvalidRecordError(f"still invalid, nothing published: {problem}")
    snap = snapshot_record(
        etype,
        key,
        payload,
        version,
        original.get("origin") or "external",
        correlation_id=original.get("event_id") or f"{record.topic}:{record.id}",
    )
    serde = Serde(settings.registry_config())
    msg = produce_sync(
        make_producer(settings),
        topics.SNAPSHOTS,
        serde.encode("Snapshot", snap, topic=topics.SNAPSHOTS),
        key=key,
    )
    return Redriven(key, topics.SNAPSHOTS, msg.partition() or 0, msg.offset() or 0)


def redrive_patch(
    settings: Settings,
    record: InvalidRecord,
    payload: Any = None,
    version: str | None = None,
    resolver: Any = None,
) -> Redriven:
    """Publish a refused patch (or its fixed values) again to the patches topic it came from.

    The patch is checked first exactly as the patch service checks it (its schema, its
    source, the ownership of every field, its mode, and that the entity is known now, looked
    up once without waiting); nothing is published when it would be refused again. It goes
    out as a new patch (a new `event_id`, `correlation_id` the refused one's) in the
    topic's own format, keyed `<entity_type>:<identifier>`.

    Args:
        payload: the fixed values (the patch's `payload` object); None keeps the patch's own.
        version: the source version; default the refused patch's.
        resolver: finds entity keys (tests); default the local model, as the service does.

    Raises:
        InvalidRecordError: not a patch, or still refused (the reason says why).
    """
    import uuid

    from pim_hub.runtime.kafka import make_producer, produce_sync
    from pim_hub.services.patches.service import PatchService

    if record.patch is None:
        raise InvalidRecordError(f"{record.id} is not a refused patch ({record.kind})")
    topic = record.source_topic or ""
    if topic not in PATCH_TOPICS:
        raise InvalidRecordError(
            f"{record.id}: refused patch from {topic or 'an unnamed topic'}, not from one of "
            f"{', '.join(PATCH_TOPICS)}: it cannot be sent back"
        )
    if resolver is None and not settings.database_url:
        raise InvalidRecordError(
            "a patch is checked against the local model before it is sent again: set "
            "HUB_DATABASE_URL"
        )
    original = record.patch
    fixed = dict(original)
    fixed["event_id"] = str(uuid.uuid4())
    fixed["correlation_id"] = original.get("correlation_id") or original.get("event_id")
    if payload is not None:
        fixed["payload"] = payload
    if version is not None:
        fixed["version"] = version
    identifier = fixed.get("identifier")
    key = record.key or f"{fixed.get('entity_type')}:{identifier}"
    serde = Serde(settings.registry_config())
    if topic == topics.PATCHES_JSON:
        fixed["received_at"] = int(datetime.now(UTC).timestamp() * 1000)  # ms in JSON
        value = orjson.dumps({k: v for k, v in fixed.items() if v is not None})
    else:
        text = fixed.get("payload")
        fixed["payload"] = text if isinstance(text, str) else orjson.dumps(text).decode()
        fixed["received_at"] = datetime.now(UTC)
        try:
            value = serde.encode("Patch", fixed, topic=topics.PATCHES)
        except SchemaError as exc:
            raise InvalidRecordError(f"still invalid, nothing published: {exc}") from exc
    service = PatchService(settings, resolver=resolver)
    try:
        outcome = service.decide(topic, value, wait=False)
    finally:
        close = getattr(service.resolver, "close", None)
        if resolver is None and close is not None:
            close()
    if outcome.refused is not None:
        raise InvalidRecordError(
            f"still refused ({outcome.refused.code}), nothing published: {outcome.refused}"
        )
    msg = produce_sync(make_producer(settings), topic, value, key=key)
    return Redriven(key, topic, msg.partition() or 0, msg.offset() or 0)


def set_aside_rows(
    database_url: str, stage: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Records a projector (or another stage) could not write and set aside, newest first.

    They stay on their topic; the rows say which record and why (table set_aside_records).
    """
    import psycopg
    from psycopg.rows import dict_row

    sql = (
        'SELECT id, stage, topic, partition, "offset", record_key, reason, message, recorded_at'
        " FROM set_aside_records"
    )
    params: list[Any] = []
    if stage:
        sql += " WHERE stage = %s"
        params.append(stage)
    sql += " ORDER BY recorded_at DESC, id DESC LIMIT %s"
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, [*params, limit]).fetchall()
