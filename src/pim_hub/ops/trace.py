"""`hub trace ENTITY`: one entity's timeline from raw event to snapshot, mutation, jobs and
delivery statuses, read from the topics (whatever their retention still holds) and the
PostgreSQL projections (entity model and deliveries).

Producers' patches are part of it: the patches sent for the entity's identifier (SKU) or code
on `pim.patches` and `pim.patches.json` (keyed `<entity_type>:<identifier>`), each marked
accepted (the snapshot that carried it to the mutator) or refused (its record on
`pim.snapshots.invalid`, with the reason). A SKU no entity has yet is traced through its
patches alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from confluent_kafka import Message
from psycopg.rows import dict_row

from pim_hub.runtime import tracing
from pim_hub.runtime.logread import (
    TP,
    ephemeral_consumer,
    log_bounds,
    offsets_for_time,
    partitions_of,
    scan,
)
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.entities import ENTITY_TYPES
from pim_hub.schemas.errors import PermanentError, SchemaError
from pim_hub.schemas.ownership import patch_of
from pim_hub.schemas.serde import Serde

logger = logging.getLogger(__name__)

#: Order of stages with the same timestamp (what causes what).
STAGE_ORDER = {
    "patch": 0,
    "raw-event": 0,
    "snapshot": 1,
    "invalid": 2,
    "mutation": 2,
    "job": 3,
    "dead-letter": 4,
    "status": 5,
}


class TraceError(PermanentError):
    """An entity that cannot be traced as asked."""


@dataclass(frozen=True)
class TraceEvent:
    """One step of an entity's history."""

    at: datetime
    stage: str
    topic: str
    partition: int
    offset: int
    summary: str
    data: dict[str, Any] = field(default_factory=dict)

    def sort_key(self) -> tuple[datetime, int, str, int, int]:
        """Time, then causal stage, then log position."""
        return (self.at, STAGE_ORDER.get(self.stage, 9), self.topic, self.partition, self.offset)

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "at": self.at.isoformat(),
            "stage": self.stage,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "summary": self.summary,
            **self.data,
        }


@dataclass
class Trace:
    """Everything found about some entity keys."""

    query: str
    keys: list[str]
    events: list[TraceEvent] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)  # entity model rows
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # latest status per job
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly view (timestamps as ISO 8601 text)."""
        out: dict[str, Any] = _jsonable(
            {
                "query": self.query,
                "keys": self.keys,
                "entities": self.entities,
                "timeline": [e.as_json() for e in self.events],
                "deliveries": self.deliveries,
                "notes": self.notes,
            }
        )
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def looks_like_key(text: str) -> bool:
    """True for `<entity type>:<id>`."""
    etype, sep, ident = text.partition(":")
    return bool(sep and ident) and etype in ENTITY_TYPES


def _ms(msg: Message) -> datetime:
    kind, value = msg.timestamp()
    if kind == 0 or value < 0:
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromtimestamp(value / 1000, UTC)


def _json_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _headers(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    raw = msg.headers() or []
    for k, v in raw.items() if isinstance(raw, dict) else raw:
        out[k] = v.decode(errors="replace") if isinstance(v, bytes) else str(v or "")
    return out


def _with_trace(event: TraceEvent, msg: Message) -> TraceEvent:
    """The record's OpenTelemetry trace id (its `traceparent` header), when it carries one."""
    ident = tracing.trace_id(msg.headers())
    if ident is not None:
        event.data["trace_id"] = ident
    return event


def _short(ident: str | None) -> str:
    return (ident or "?")[:8]


def _where(msg: Message) -> tuple[str, int, int]:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def raw_event(msg: Message) -> TraceEvent:
    """A pim.raw-events record (Akeneo's own JSON: legacy event or CloudEvent)."""
    value = msg.value()
    body = _json_text(value.decode(errors="replace") if isinstance(value, bytes) else None)
    body = body if isinstance(body, dict) else {}
    ident = body.get("event_id") or body.get("id")
    kind = body.get("action") or body.get("type") or "event"
    when = body.get("event_datetime") or body.get("time")
    data = {"event_id": ident, "event_type": kind, "event_time": when, "headers": _headers(msg)}
    return _with_trace(
        TraceEvent(_ms(msg), "raw-event", *_where(msg), f"{kind} (event {_short(ident)})", data),
        msg,
    )


def snapshot_event(msg: Message, record: dict[str, Any]) -> TraceEvent:
    """A pim.snapshots record (a patch the patch service accepted is one, its delta the patch)."""
    patch = patch_of(_json_text(record.get("delta")))
    what = "deletion" if record["payload"] is None else ("delta" if record.get("delta") else "full")
    if patch is not None:
        what = "patch"
    data = {
        "event_id": record["event_id"],
        "origin": record["origin"],
        "source_version": record["source_version"],
        "kind": what,
        "received_at": record["received_at"],
    }
    summary = f"{what} snapshot from {record['origin']}, version {record['source_version']}"
    if patch is not None:
        data["patch_source"] = patch.get("source")
        summary = (
            f"patch snapshot from source {patch.get('source')} (patch {_short(record['event_id'])}"
            f" resolved to the entity), version {record['source_version']}"
        )
    return _with_trace(TraceEvent(_ms(msg), "snapshot", *_where(msg), summary, data), msg)


def patch_fields(payload: Any) -> list[str]:
    """The field names a patch payload touches (`values.stock`, `enabled`), for a summary."""
    if not isinstance(payload, dict):
        return []
    names = [k for k in payload if k != "values"]
    values = payload.get("values")
    if isinstance(values, dict):
        names += [f"values.{a}" for a in values]
    return sorted(names)


def patch_event(msg: Message, patch: dict[str, Any]) -> TraceEvent:
    """A producer's patch on pim.patches or pim.patches.json, as the producer sent it."""
    fields = patch_fields(patch.get("payload"))
    data = {
        "event_id": patch.get("event_id"),
        "source": patch.get("source"),
        "identifier": patch.get("identifier"),
        "mode": patch.get("mode") or "patch",
        "version": patch.get("version"),
        "fields": fields,
        "payload": patch.get("payload"),
    }
    summary = (
        f"patch {_short(patch.get('event_id'))} from source {patch.get('source')} by"
        f" {patch.get('identifier')} ({data['mode']}, version {patch.get('version')}):"
        f" {', '.join(fields) or '(nothing)'}"
    )
    return _with_trace(TraceEvent(_ms(msg), "patch", *_where(msg), summary, data), msg)


def invalid_event(msg: Message, serde: Serde) -> TraceEvent:
    """A pim.snapshots.invalid record: what was refused and why."""
    from pim_hub.ops.invalid import decode

    rec = decode(msg, serde)
    data: dict[str, Any] = {
        "error_type": rec.error_type,
        "reason": rec.reason,
        "kind": rec.kind,
        "record_id": rec.id,
    }
    what = f"{rec.error_type}/{rec.code}" if rec.code else rec.error_type
    summary = f"refused ({what}): {rec.reason} [hub invalid show {rec.id}]"
    if rec.patch is not None:
        data["code"] = rec.code
        data["event_id"] = rec.patch.get("event_id")
        data["source"] = rec.patch.get("source")
        summary = (
            f"patch {_short(rec.patch.get('event_id'))} refused ({what}): {rec.reason}"
            f" [hub invalid show {rec.id}; hub invalid redrive {rec.id}]"
        )
    return _with_trace(TraceEvent(_ms(msg), "invalid", *_where(msg), summary, data), msg)


def mark_patch_outcomes(events: list[TraceEvent]) -> list[TraceEvent]:
    """Each patch marked `accepted` (a snapshot carried it on) or `refused` (set aside), or
    `pending` while neither is found (the patch service has not read it yet, or waits for
    its entity)."""
    accepted = {e.data.get("event_id") for e in events if e.stage == "snapshot"}
    refused = {
        e.data.get("event_id"): e.data.get("code")
        for e in events
        if e.stage == "invalid" and e.data.get("kind") == "patch"
    }
    out = []
    for e in events:
        if e.stage == "patch":
            ident = e.data.get("event_id")
            if ident in accepted:
                outcome = "accepted"
            elif ident in refused:
                outcome = f"refused ({refused[ident]})" if refused[ident] else "refused"
            else:
                outcome = "pending"
            data = {**e.data, "outcome": outcome.partition(" ")[0]}
            e = replace(e, summary=f"{e.summary} → {outcome}", data=data)
        out.append(e)
    return out


def _change(c: dict[str, Any]) -> dict[str, Any]:
    out = {k: c.get(k) for k in ("field", "attribute", "locale", "scope")}
    out["old"], out["new"] = _json_text(c.get("old")), _json_text(c.get("new"))
    for k in ("added", "removed"):
        if c.get(k) is not None:
            out[k] = c[k]
    return out


def mutation_event(msg: Message, m: dict[str, Any]) -> TraceEvent:
    """A hub.mutations record, with its changes."""
    data = {
        "mutation_id": m["mutation_id"],
        "operation": m["operation"],
        "version": m["version"],
        "causation_id": m["causation_id"],
        "origin": m["origin"],
        "changes": [_change(c) for c in m["changes"]],
    }
    summary = (
        f"{m['operation']} {_short(m['mutation_id'])}, version {m['version']},"
        f" {len(m['changes'])} change(s)"
    )
    return _with_trace(TraceEvent(_ms(msg), "mutation", *_where(msg), summary, data), msg)


def job_event(msg: Message, job: dict[str, Any]) -> TraceEvent:
    """A job on a priority, retry or dead-letter topic."""
    topic = _where(msg)[0]
    headers = _headers(msg)
    dead = topic == topics.JOBS_DEAD
    data = {
        "job_id": job["job_id"],
        "mutation_id": job["mutation"]["mutation_id"],
        "integration_id": job["integration_id"],
        "priority": job["priority"],
        "attempt": job["attempt"],
        "mode": job["mode"],
        "last_error": job.get("last_error"),
    }
    if dead:
        data["error_type"] = headers.get("error.type")
        data["error_message"] = headers.get("error.message") or job.get("last_error")
        summary = (
            f"dead letter {_short(job['job_id'])} → {job['integration_id']}"
            f" after attempt {job['attempt']}: {data['error_type']}: {data['error_message']}"
        )
        return _with_trace(TraceEvent(_ms(msg), "dead-letter", *_where(msg), summary, data), msg)
    where = "retry" if topic.startswith("hub.jobs.retry.") else job["priority"]
    summary = (
        f"job {_short(job['job_id'])} → {job['integration_id']} ({where}, attempt"
        f" {job['attempt']}, {job['mode']})"
    )
    return _with_trace(TraceEvent(_ms(msg), "job", *_where(msg), summary, data), msg)


def status_event(msg: Message, s: dict[str, Any]) -> TraceEvent:
    """A hub.delivery-status record."""
    data = {
        "job_id": s["job_id"],
        "mutation_id": s["mutation_id"],
        "integration_id": s["integration_id"],
        "status": s["status"],
        "attempt": s["attempt"],
        "error_kind": s["error_kind"],
        "error_message": s["error_message"],
        "target_ref": s["target_ref"],
        "duration_ms": s["duration_ms"],
        "operation": s.get("operation"),  # None in statuses written before schema v2
    }
    err = f": {s['error_kind']}: {s['error_message']}" if s["error_message"] else ""
    summary = (
        f"{s['status']} {_short(s['job_id'])} → {s['integration_id']} (attempt {s['attempt']}){err}"
    )
    data["occurred_at"] = s["occurred_at"]
    # Ordered by when it was written, like every other step (a dead letter and its status
    # are written together, the dead letter first).
    return _with_trace(TraceEvent(_ms(msg), "status", *_where(msg), summary, data), msg)


def job_topics(settings: Settings) -> list[str]:
    """Every topic a job of the hub can be on."""
    from pim_hub.registry.queue_map import queue_map_from_settings

    prio = list(queue_map_from_settings(settings).topics.values())
    retries = [topics.retry_topic(d) for d in settings.retry_delays_s]
    return [*prio, *retries, topics.JOBS_DEAD]


def _keys_from_db(url: str | None, query: str) -> tuple[list[str], list[dict[str, Any]]]:
    from pim_hub.services.projections.entities import KEYS_BY_IDENTIFIER_SQL

    if not url:
        return [], []
    try:
        with psycopg.connect(url, row_factory=dict_row) as conn:
            rows = conn.execute(
                "SELECT entity_key, entity_type, code, deleted, version, mutation_id, operation,"
                " mutated_at FROM entities WHERE entity_key = %s OR code = %s"
                " OR entity_key = 'product:' || %s"
                f" OR entity_key IN ({KEYS_BY_IDENTIFIER_SQL})"
                " ORDER BY entity_key",
                (query, query, query, query),
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return [], []
    return [r["entity_key"] for r in rows], rows


def _keys_from_log(settings: Settings, query: str, serde: Serde) -> list[str]:
    """Keys whose mutation state has this identifier (SKU) or code; scans hub.mutations."""
    consumer = ephemeral_consumer(settings, "trace")
    found: set[str] = set()
    try:
        bounds = log_bounds(
            consumer, [(topics.MUTATIONS, p) for p in partitions_of(consumer, topics.MUTATIONS)]
        )
        needle = query.encode()
        # Which attributes are identifiers (their latest state), and the product states
        # holding the needle: a products-uuid payload names its SKU only as a value.
        identifier_attrs: dict[str, bool] = {}
        candidates: dict[str, dict[str, Any]] = {}
        for msg in scan(consumer, bounds):
            value = msg.value() or b""
            is_attribute = (msg.key() or b"").startswith(b"attribute:")
            if needle not in value and not is_attribute:
                continue  # cheap test before decoding: the SKU must be in the bytes
            try:
                m = serde.decode("Mutation", value, topic=topics.MUTATIONS)
            except SchemaError:
                continue
            state = _json_text(m["state"]) or {}
            if not isinstance(state, dict):
                continue
            if m["entity_type"] == "attribute":
                identifier_attrs[str(state.get("code"))] = (
                    m["operation"] != "delete" and state.get("type") == IDENTIFIER_TYPE
                )
                if needle not in value:
                    continue
            if query in (state.get("identifier"), state.get("code")):
                found.add(m["entity_key"])
            elif m["entity_type"] == "product":
                candidates[m["entity_key"]] = state
    finally:
        consumer.close()
    identifiers = {code for code, yes in identifier_attrs.items() if yes}
    for key, state in candidates.items():
        if query in identifier_values(state, identifiers):
            found.add(key)
    return sorted(found)


#: Akeneo's attribute type of the product identifier (SKU).
IDENTIFIER_TYPE = "pim_catalog_identifier"


def identifier_values(state: dict[str, Any], identifier_attributes: set[str]) -> set[str]:
    """The identifier values of a product state: its non-localised, non-scoped values of an
    identifier attribute (known from attribute snapshots or marked by `attribute_type`)."""
    out: set[str] = set()
    values = state.get("values")
    if not isinstance(values, dict):
        return out
    for attribute, items in values.items():
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict) or item.get("locale") or item.get("scope"):
                continue
            marked = item.get("attribute_type") == IDENTIFIER_TYPE
            if (attribute in identifier_attributes or marked) and isinstance(item.get("data"), str):
                out.add(item["data"])
    return out


def resolve(settings: Settings, query: str, serde: Serde) -> tuple[list[str], list[dict[str, Any]]]:
    """Entity keys for an entity key, a product uuid, a SKU or a code, and their model rows."""
    keys, rows = _keys_from_db(settings.database_url, query)
    if looks_like_key(query) and query not in keys:
        keys = [query, *keys]
    if not keys:
        keys = _keys_from_log(settings, query, serde)
    return keys, rows


def deliveries_of(url: str | None, keys: Sequence[str]) -> list[dict[str, Any]]:
    """The deliveries projection rows of some entities (latest status per job)."""
    if not url or not keys:
        return []
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT job_id, mutation_id, integration_id, priority, status, attempt, error_kind,"
            " error_message, target_ref, occurred_at, operation FROM deliveries"
            " WHERE entity_key = ANY(%s)"
            " ORDER BY occurred_at",
            (list(keys),),
        ).fetchall()


def collect(
    settings: Settings, query: str, since: datetime | None = None, serde: Serde | None = None
) -> Trace:
    """Resolve the entity and read its history from every topic and projection.

    Raises:
        TraceError: nothing matches the query.
    """
    serde = serde or Serde(settings.registry_config())
    keys, rows = resolve(settings, query, serde)
    patch_keys = patch_keys_of(query, rows)
    if not keys and not patch_keys:
        raise TraceError(f"no entity matches {query!r} (give an entity key like product:<uuid>)")
    trace = Trace(query, keys, entities=rows)
    keyset = {k.encode() for k in keys}
    suffixes = tuple(b"|" + k for k in keyset)
    # Patches and refused patches are keyed by identifier, the rest by entity key.
    patch_keyset = {k.encode() for k in patch_keys}
    entity_topics = [
        topics.RAW_EVENTS,
        topics.SNAPSHOTS,
        topics.SNAPSHOTS_BULK,
        topics.SNAPSHOTS_INVALID,
        topics.MUTATIONS,
        topics.DELIVERY_STATUS,
    ]
    patch_topics = [topics.PATCHES, topics.PATCHES_JSON]
    consumer = ephemeral_consumer(settings, "trace")
    try:
        tps: list[TP] = []
        for name in [*entity_topics, *patch_topics, *job_topics(settings)]:
            try:
                tps += [(name, p) for p in partitions_of(consumer, name)]
            except Exception:
                trace.notes.append(f"topic {name} not found")
        bounds = log_bounds(consumer, tps)
        ranges = dict(bounds)
        if since is not None:
            starts = offsets_for_time(consumer, bounds, since)
            ranges = {tp: (starts[tp], hi) for tp, (_lo, hi) in bounds.items()}
        for msg in scan(consumer, ranges):
            key = msg.key() or b""
            topic = _where(msg)[0]
            if topic in patch_topics or topic == topics.SNAPSHOTS_INVALID:
                if key not in keyset and key not in patch_keyset:
                    continue
            elif topic in entity_topics:
                if key not in keyset:
                    continue
            elif not keyset or not key.endswith(suffixes):
                continue
            event = _decode(msg, topic, serde, trace)
            if event is not None:
                trace.events.append(event)
    finally:
        consumer.close()
    if not keys:
        if not trace.events:
            raise TraceError(
                f"no entity matches {query!r}, and no patch was sent for it (give an entity "
                "key like product:<uuid>)"
            )
        trace.notes.append(
            f"no entity has identifier {query!r} yet: only the patches sent for it are shown"
        )
    trace.events = mark_patch_outcomes(sorted(trace.events, key=TraceEvent.sort_key))
    trace.deliveries = deliveries_of(settings.database_url, keys)
    return trace


def patch_keys_of(query: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The keys patches for the traced entity have: `<entity_type>:<identifier or code>`.

    A SKU or code queried is one (for a product the hub may not have seen yet); so is each
    entity model row's identifier or code. Entity keys by code (`category:shoes`) are
    patch keys already.
    """
    out = []
    if not looks_like_key(query) and query.strip():
        out.append(f"product:{query}")
    for row in rows:
        if row.get("code"):
            out.append(f"{row['entity_type']}:{row['code']}")
    return list(dict.fromkeys(out))


def _decode(msg: Message, topic: str, serde: Serde, trace: Trace) -> TraceEvent | None:
    try:
        if topic == topics.RAW_EVENTS:
            return raw_event(msg)
        if topic in (topics.PATCHES, topics.PATCHES_JSON):
            from pim_hub.ops.invalid import decode_patch

            patch = decode_patch(topic, msg.value() or b"", serde)
            if patch is None:
                raise SchemaError(f"not a patch of {topic}")
            return patch_event(msg, patch)
        if topic == topics.SNAPSHOTS_INVALID:
            return invalid_event(msg, serde)
        if topic in (topics.SNAPSHOTS, topics.SNAPSHOTS_BULK):
            return snapshot_event(msg, serde.decode("Snapshot", msg.value(), topic=topic))
        if topic == topics.MUTATIONS:
            return mutation_event(msg, serde.decode("Mutation", msg.value(), topic=topic))
        if topic == topics.DELIVERY_STATUS:
            return status_event(msg, serde.decode("DeliveryStatus", msg.value(), topic=topic))
        return job_event(msg, serde.decode("Job", msg.value(), topic=topic))
    except SchemaError as exc:
        t, p, o = _where(msg)
        trace.notes.append(f"{t}[{p}]@{o}: undecodable ({exc})")
        return None


def render(trace: Trace, changes: bool = True) -> list[str]:
    """Human-readable timeline."""
    out = [f"trace of {', '.join(trace.keys) or trace.query}"]
    for row in trace.entities:
        state = "deleted" if row.get("deleted") else "live"
        out.append(
            f"  model: {row['entity_key']} {state}, version {row.get('version')},"
            f" last mutation {_short(row.get('mutation_id'))} ({row.get('operation')})"
        )
    if not trace.events:
        out.append("  (nothing found in the topics: retention may have removed it)")
    # The OpenTelemetry traces the records carry: look them up in your tracing back end.
    ids = list(dict.fromkeys(e.data["trace_id"] for e in trace.events if "trace_id" in e.data))
    if ids:
        out.append(f"  trace id(s): {', '.join(ids)}")
    indent = {
        "patch": 0,
        "raw-event": 0,
        "snapshot": 0,
        "invalid": 1,
        "mutation": 1,
        "job": 2,
        "dead-letter": 2,
        "status": 3,
    }
    for e in trace.events:
        pad = "  " * (indent.get(e.stage, 0) + 1)
        tid = f"  [trace {e.data['trace_id'][:8]}]" if "trace_id" in e.data else ""
        out.append(f"{e.at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" {pad}{e.stage:11} {e.summary}{tid}")
        if changes and e.stage == "mutation":
            for c in e.data.get("changes", []):
                out.append(" " * 24 + pad + "  " + describe_change(c))
    if trace.deliveries:
        out.append("deliveries (latest status per job):")
        for d in trace.deliveries:
            err = f" {d['error_kind']}: {d['error_message']}" if d.get("error_message") else ""
            out.append(
                f"  {_short(d['job_id'])} {d['integration_id']:24} {d['status']:9}"
                f" attempt {d['attempt']}{err}"
            )
    out.extend(f"note: {n}" for n in trace.notes)
    return out


def describe_change(c: dict[str, Any]) -> str:
    """`values.name[en_US]: "Runner" → "Runner 2"` and the like."""
    name = c["field"] + (f".{c['attribute']}" if c.get("attribute") else "")
    where = ",".join(x for x in (c.get("locale"), c.get("scope")) if x)
    if where:
        name += f"[{where}]"
    if c.get("added") is not None or c.get("removed") is not None:
        return f"{name}: +{c.get('added') or []} -{c.get('removed') or []}"
    return f"{name}: {_brief(c.get('old'))} → {_brief(c.get('new'))}"


def _brief(value: Any, limit: int = 60) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def keys_in(events: Iterable[TraceEvent], stage: str) -> list[str]:
    """Ids of one stage, in order (mutation ids, job ids, statuses): for tests and tools."""
    field_of = {
        "mutation": "mutation_id",
        "job": "job_id",
        "dead-letter": "job_id",
        "status": "status",
    }
    return [str(e.data.get(field_of.get(stage, "summary"))) for e in events if e.stage == stage]
