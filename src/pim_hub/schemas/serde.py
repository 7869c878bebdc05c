"""Avro serde for hub events: single-object encoding, or Schema Registry framing."""

from __future__ import annotations

import copy
import io
import json
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from pim_hub.schemas.errors import RetryableError, SchemaError, UnknownSchemaVersion
from pim_hub.schemas.flat_writer import compile_writer

AVRO_DIR = Path(__file__).parent / "avro"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
REGISTRY_MAGIC = b"\x00"

#: event name -> file stem of its .avsc
EVENTS = {
    "Snapshot": "snapshot",
    "Mutation": "mutation",
    "Job": "job",
    "DeliveryStatus": "delivery_status",
    "Patch": "patch",
}


@dataclass(frozen=True)
class SchemaVersion:
    """One released version of one event schema."""

    event: str
    version: int
    raw: dict[str, Any]
    parsed: Any
    canonical: str
    fingerprint: (
        bytes  # 8 bytes, little-endian CRC-64-AVRO as the spec's single-object encoding asks
    )


def _load_raw(version_dir: Path, stem: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((version_dir / f"{stem}.avsc").read_text())
    # Job embeds Mutation by name; inline it so every schema is self-contained
    # (a registry or an outside reader gets one complete document).
    if stem == "job":
        mutation = _load_raw(version_dir, "mutation")
        for fld in raw["fields"]:
            if fld["type"] == "Mutation":
                fld["type"] = copy.deepcopy(mutation)
    return raw


def _identity(parsed: Any) -> tuple[str, bytes]:
    """A parsed schema's canonical form and its fingerprint as single-object framing stores it."""
    canonical = to_parsing_canonical_form(parsed)
    # fastavro gives the CRC-64-AVRO as big-endian hex; single-object encoding stores it
    # little-endian.
    return canonical, bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))[::-1]


def _versions_on_disk() -> list[int]:
    return sorted(int(p.name[1:]) for p in AVRO_DIR.glob("v*") if p.name[1:].isdigit())


@cache
def all_versions() -> dict[str, list[SchemaVersion]]:
    """Every released version of every event schema, oldest first."""
    out: dict[str, list[SchemaVersion]] = {name: [] for name in EVENTS}
    for version in _versions_on_disk():
        vdir = AVRO_DIR / f"v{version}"
        for name, stem in EVENTS.items():
            if not (vdir / f"{stem}.avsc").exists():
                continue
            raw = _load_raw(vdir, stem)
            parsed = fastavro.parse_schema(copy.deepcopy(raw))
            canonical, fp = _identity(parsed)
            out[name].append(SchemaVersion(name, version, raw, parsed, canonical, fp))
    return out


def current(event: str) -> SchemaVersion:
    """The newest schema of an event: what this hub writes and reads into."""
    try:
        return all_versions()[event][-1]
    except (KeyError, IndexError) as exc:
        raise SchemaError(f"unknown event type {event!r}") from exc


@cache
def _by_fingerprint() -> dict[bytes, SchemaVersion]:
    return {v.fingerprint: v for versions in all_versions().values() for v in versions}


@cache
def _flat_writer(event: str) -> Callable[[Mapping[str, Any]], bytes] | None:
    """The quicker writer of a flat event's current schema, None for the others (fastavro)."""
    return compile_writer(current(event).parsed)


@dataclass(frozen=True)
class _Split:
    """An event schema cut around one field: the fields before it, and the fields after it."""

    before: Any
    after: Any
    fingerprint: bytes  # of the field's own record schema, as single-object framing stores it


@cache
def _split(event: str, field: str) -> _Split:
    raw = current(event).raw
    names = [f["name"] for f in raw["fields"]]
    at = names.index(field)
    inner = raw["fields"][at]["type"]
    if not isinstance(inner, dict) or inner.get("type") != "record":
        raise SchemaError(f"{event}.{field} is not an inline record")
    # The inner record is parsed first so that the parts may name its types.
    named: dict[str, Any] = {}
    _, fp = _identity(fastavro.parse_schema(copy.deepcopy(inner), named_schemas=named))

    def part(fields: list[dict[str, Any]], suffix: str) -> Any:
        schema = {
            "type": "record",
            "name": f"{raw['name']}_{suffix}",
            "namespace": raw.get("namespace", ""),
            "fields": copy.deepcopy(fields),
        }
        return fastavro.parse_schema(schema, named_schemas=named)

    return _Split(part(raw["fields"][:at], "before"), part(raw["fields"][at + 1 :], "after"), fp)


@cache
def _head(event: str, count: int) -> Any:
    """The first `count` fields of an event's current schema, as a record schema of their own."""
    raw = current(event).raw
    schema = {
        "type": "record",
        "name": f"{raw['name']}_head{count}",
        "namespace": raw.get("namespace", ""),
        "fields": copy.deepcopy(raw["fields"][:count]),
    }
    return fastavro.parse_schema(schema)


class RegistryUnavailable(RetryableError):
    """The Schema Registry did not answer (network, 5xx): the same record may work later."""


class Registry:
    """Schema ids through confluent-kafka's SchemaRegistryClient (auth, TLS, caching).

    With `auto.register.schemas` (the default) the hub registers its schema under a subject
    the first time it writes there (`POST /subjects/{subject}/versions`, idempotent); without,
    it only looks the schema up (`POST /subjects/{subject}`), for read-only keys and registries
    where schemas are registered at deployment (`hub schemas register`). Ids are cached both
    ways for the life of the process, as the registry's ids never change.
    """

    def __init__(self, conf: str | Mapping[str, Any], client: Any = None) -> None:
        options: dict[str, Any] = {"url": conf} if isinstance(conf, str) else dict(conf)
        self.auto_register = str(options.pop("auto.register.schemas", True)).lower() not in (
            "false",
            "0",
        )
        self.url = str(options["url"])
        if client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            client = SchemaRegistryClient(options)
        self.client: Any = client
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, SchemaVersion] = {}
        self._lock = threading.Lock()

    @staticmethod
    def schema_of(version: SchemaVersion) -> Any:
        """The registry's Schema object of a released version."""
        from confluent_kafka.schema_registry import Schema

        return Schema(json.dumps(version.raw), "AVRO")

    def id_for(self, subject: str, version: SchemaVersion) -> int:
        """The id of the schema under subject: registered, or looked up only."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        key = (subject, version.canonical)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        try:
            if self.auto_register:
                schema_id = int(self.client.register_schema(subject, self.schema_of(version)))
            else:
                found = self.client.lookup_schema(subject, self.schema_of(version))
                schema_id = int(found.schema_id)
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status >= 500 or status < 0:
                raise RegistryUnavailable(f"schema registry failed for {subject}: {exc}") from exc
            if not self.auto_register and status == 404:
                raise SchemaError(
                    f"{version.event} v{version.version} is not registered under {subject} and "
                    "HUB_SCHEMA_REGISTRY_AUTO_REGISTER is false: run `hub schemas register`"
                ) from exc
            raise SchemaError(f"schema registry refused {subject}: {exc}") from exc
        except Exception as exc:  # the HTTP layer's own errors: connection refused, timeouts
            raise RegistryUnavailable(f"schema registry unreachable for {subject}: {exc}") from exc
        with self._lock:
            self._ids[key] = schema_id
            self._schemas[schema_id] = version
        return schema_id

    def schema_for(self, schema_id: int) -> SchemaVersion:
        """The writer schema of a registry id, matched to a released version by fingerprint."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        with self._lock:
            if schema_id in self._schemas:
                return self._schemas[schema_id]
        try:
            found = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchemaVersion(f"schema id {schema_id} is not in the registry") from exc
            if exc.http_status_code >= 500 or exc.http_status_code < 0:
                raise RegistryUnavailable(f"schema registry failed for id {schema_id}") from exc
            raise SchemaError(
                f"schema registry answered {exc.http_status_code} for id {schema_id}"
            ) from exc
        except Exception as exc:
            raise RegistryUnavailable(f"schema registry unreachable: {exc}") from exc
        try:
            raw = json.loads(found.schema_str)
            parsed = fastavro.parse_schema(raw)
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise SchemaError(f"schema id {schema_id} is no Avro schema the hub reads") from exc
        canonical, fp = _identity(parsed)
        version = _by_fingerprint().get(fp) or SchemaVersion("?", 0, raw, parsed, canonical, fp)
        with self._lock:
            self._schemas[schema_id] = version
        return version


class Serde:
    """Encodes and decodes hub events; one instance per process."""

    def __init__(self, registry: str | Mapping[str, Any] | Registry | None = None) -> None:
        """registry: a URL, a registry client config (Settings.registry_config), or a Registry."""
        if registry is None or isinstance(registry, Registry):
            self.registry = registry
        else:
            self.registry = Registry(registry)

    def encode(self, event: str, record: dict[str, Any], *, topic: str | None = None) -> bytes:
        """Encode a record with the current schema of event."""
        version = current(event)
        quick = _flat_writer(event)
        if quick is not None:
            try:
                return self._header(event, version, topic) + quick(record)
            except Exception:  # noqa: S110 - fastavro below encodes it or says what is wrong
                pass
        buf = io.BytesIO()
        buf.write(self._header(event, version, topic))
        try:
            fastavro.schemaless_writer(buf, version.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"cannot encode {event}: {exc}", topic=topic) from exc
        return buf.getvalue()

    def encode_embedding(
        self,
        event: str,
        record: dict[str, Any],
        field: str,
        encoded: bytes | None,
        *,
        topic: str | None = None,
    ) -> bytes:
        """Encode record, taking its `field` from `encoded`, that field's record as read from Kafka.

        Avro writes a record as its fields' encodings one after the other, so when `encoded` was
        written with the very schema the field has, its body goes in as it is: a Job then costs
        the encoding of its few own fields, not of the whole Mutation again. Otherwise (an older
        writer, another framing) `record[field]`, the decoded value, is encoded as usual.
        """
        body = self._embeddable(event, field, encoded, topic)
        if body is None:
            return self.encode(event, record, topic=topic)
        split = _split(event, field)
        buf = io.BytesIO()
        buf.write(self._header(event, current(event), topic))
        try:
            fastavro.schemaless_writer(buf, split.before, record)
            buf.write(body)
            fastavro.schemaless_writer(buf, split.after, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"cannot encode {event}: {exc}", topic=topic) from exc
        return buf.getvalue()

    def embeds_as_read(
        self, event: str, field: str, encoded: bytes | None, *, topic: str | None = None
    ) -> bool:
        """Whether `encode_embedding` takes `encoded` into `event.field` as it is."""
        return self._embeddable(event, field, encoded, topic) is not None

    def _embeddable(
        self, event: str, field: str, encoded: bytes | None, topic: str | None
    ) -> bytes | None:
        """The Avro body of `encoded` if it was written with the very schema `event.field` has."""
        split = _split(event, field)  # first: a field that is no inline record is refused
        try:
            writer, body = self._framed(field, encoded, topic)
        except SchemaError:
            return None
        return body if writer.fingerprint == split.fingerprint else None

    def decode_head(
        self, event: str, data: bytes | None, count: int, *, topic: str | None = None
    ) -> dict[str, Any] | None:
        """The first `count` fields of a record, without reading the rest.

        Avro writes a record as its fields one after the other, so the first fields read
        with a schema of those fields alone are the record's own. Only for bytes written with
        the current schema (None otherwise: decode them whole). A creation's mutation carries
        every value of the product; its first fields take a twentieth of the time.
        """
        writer, body = self._framed(event, data, topic)
        if writer.fingerprint != current(event).fingerprint:
            return None
        try:
            head: Any = fastavro.schemaless_reader(io.BytesIO(body), _head(event, count), None)
        except Exception as exc:
            raise SchemaError(f"cannot decode {event}: {exc}", topic=topic) from exc
        return dict(head)

    def _header(self, event: str, version: SchemaVersion, topic: str | None) -> bytes:
        if self.registry is not None:
            subject = f"{topic}-value" if topic else event
            return REGISTRY_MAGIC + struct.pack(">I", self.registry.id_for(subject, version))
        return SINGLE_OBJECT_MAGIC + version.fingerprint

    def _framed(
        self, event: str, data: bytes | None, topic: str | None
    ) -> tuple[SchemaVersion, bytes]:
        """The writer schema named by data's framing, and the Avro body after it."""
        if not data:
            raise SchemaError(f"empty {event} record", topic=topic)
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            writer = _by_fingerprint().get(data[2:10])
            if writer is None:
                raise UnknownSchemaVersion(
                    f"unknown schema fingerprint {data[2:10].hex()} for {event}", topic=topic
                )
            return writer, data[10:]
        if data[:1] == REGISTRY_MAGIC and len(data) >= 5:
            if self.registry is None:
                raise SchemaError(
                    "record uses Schema Registry framing but HUB_SCHEMA_REGISTRY_URL is not set",
                    topic=topic,
                )
            return self.registry.schema_for(struct.unpack(">I", data[1:5])[0]), data[5:]
        raise SchemaError(
            f"{event} record has no Avro single-object or registry header", topic=topic
        )

    def decode(self, event: str, data: bytes | None, *, topic: str | None = None) -> dict[str, Any]:
        """Decode bytes written with any released version into the current schema's shape."""
        writer, body = self._framed(event, data, topic)
        if writer.event not in (event, "?"):
            raise SchemaError(f"expected a {event} record, got {writer.event}", topic=topic)
        try:
            result: Any = fastavro.schemaless_reader(
                io.BytesIO(body), writer.parsed, current(event).parsed
            )
        except Exception as exc:
            raise SchemaError(f"cannot decode {event}: {exc}", topic=topic) from exc
        return dict(result)
