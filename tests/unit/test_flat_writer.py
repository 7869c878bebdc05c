"""The quicker writer of flat events writes exactly what fastavro writes, or leaves it to it."""

from __future__ import annotations

import io
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from pim_hub.schemas import serde
from pim_hub.schemas.errors import SchemaError
from pim_hub.schemas.flat_writer import compile_writer


def _fastavro(event: str, record: dict[str, Any]) -> bytes:
    version = serde.current(event)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, version.parsed, record)
    return serde.SINGLE_OBJECT_MAGIC + version.fingerprint + buf.getvalue()


def _text(rng: random.Random) -> str:
    # ASCII half the time, so lengths land on the varint boundaries in bytes too.
    alphabet = "az09-_:| " if rng.random() < 0.5 else "az09-_:|é€😀\x00 "
    size = rng.choice([0, 1, 10, 63, 64, 65, 127, 128, 300, 8191, 8192, 16384])
    return "".join(rng.choice(alphabet) for _ in range(size))


def _instant(rng: random.Random) -> datetime | int:
    if rng.random() < 0.2:
        return rng.randint(-(2**40), 2**42)  # already in milliseconds
    base = datetime(1970, 1, 1, tzinfo=UTC)
    return base + timedelta(microseconds=rng.randint(-(2**52), 2**52))


def _status(rng: random.Random) -> dict[str, Any]:
    def maybe() -> str | None:
        return None if rng.random() < 0.5 else _text(rng)

    return {
        "job_id": _text(rng),
        "mutation_id": _text(rng),
        "integration_id": _text(rng),
        "driver": _text(rng),
        "entity_key": _text(rng),
        "priority": _text(rng),
        "status": rng.choice(["delivered", "skipped", "retrying", "dead"]),
        "attempt": rng.choice([0, 1, 63, 64, -65, 2**31 - 1, -(2**31)]),
        "error_kind": maybe(),
        "error_message": maybe(),
        "target_ref": maybe(),
        "duration_ms": rng.choice([0.0, 0.01, 12, -3.5, 1e300, math.inf, rng.random()]),
        "source_received_at": None if rng.random() < 0.3 else _instant(rng),
        "occurred_at": _instant(rng),
        "operation": rng.choice([None, "create", "update", "delete"]),
    }


def _snapshot(rng: random.Random) -> dict[str, Any]:
    return {
        "event_id": _text(rng),
        "entity_type": _text(rng),
        "entity_key": _text(rng),
        "source_version": None if rng.random() < 0.5 else _text(rng),
        "origin": rng.choice(["webhook", "event_platform", "sync", "external", "replay"]),
        "payload": None if rng.random() < 0.2 else _text(rng),
        "delta": None if rng.random() < 0.7 else _text(rng),
        "received_at": _instant(rng),
        "correlation_id": None if rng.random() < 0.5 else _text(rng),
    }


@pytest.mark.parametrize(("event", "make"), [("DeliveryStatus", _status), ("Snapshot", _snapshot)])
def test_flat_events_are_written_byte_for_byte_as_fastavro_writes_them(
    event: str, make: Any
) -> None:
    write = serde._flat_writer(event)
    assert write is not None
    rng = random.Random(20261127)
    s = serde.Serde()
    for _ in range(600):
        record = make(rng)
        expected = _fastavro(event, record)
        # The writer itself (a fallback to fastavro would hide its mistakes), and the serde.
        assert write(record) == expected[10:], record
        assert s.encode(event, record) == expected


def test_nested_events_stay_with_fastavro() -> None:
    for event in ("Job", "Mutation"):
        assert compile_writer(serde.current(event).parsed) is None
    assert (
        compile_writer({"type": "record", "name": "R", "fields": [{"name": "a", "type": "bytes"}]})
        is None
    )
    three = {"name": "u", "type": ["null", "string", "long"]}
    assert compile_writer({"type": "record", "name": "R", "fields": [three]}) is None


def _valid_status() -> dict[str, Any]:
    return _status(random.Random(7)) | {"occurred_at": datetime.now(UTC), "attempt": 1}


def test_what_it_does_not_take_goes_to_fastavro() -> None:
    s = serde.Serde()
    write = serde._flat_writer("DeliveryStatus")
    assert write is not None
    # A naive time (fastavro reads it as local time), a bool where a number goes, a missing
    # field with a default: the quick writer refuses, and the bytes are fastavro's.
    for change in (
        {"occurred_at": datetime(2026, 1, 2, 3, 4, 5)},
        {"duration_ms": True},
    ):
        record = _valid_status() | change
        with pytest.raises((TypeError, ValueError)):
            write(record)
        assert s.encode("DeliveryStatus", record) == _fastavro("DeliveryStatus", record)
    record = _valid_status()
    del record["target_ref"]
    with pytest.raises(KeyError):
        write(record)
    assert s.encode("DeliveryStatus", record) == _fastavro("DeliveryStatus", record)


@pytest.mark.parametrize(
    "change",
    [{"status": "lost"}, {"attempt": "1"}, {"job_id": None}, {"job_id": b"bytes"}],
)
def test_a_bad_record_still_fails_with_a_schema_error(change: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match="cannot encode DeliveryStatus"):
        serde.Serde().encode("DeliveryStatus", _valid_status() | change)


def test_what_it_writes_reads_back() -> None:
    s = serde.Serde()
    at = datetime(2026, 11, 27, 6, 0, 1, 234000, tzinfo=UTC)  # milliseconds, as Avro keeps
    record = _valid_status() | {"occurred_at": at, "source_received_at": at - timedelta(hours=1)}
    back = s.decode("DeliveryStatus", s.encode("DeliveryStatus", record))
    assert back == record


def test_every_kind_it_takes_matches_fastavro() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Kinds",
            "fields": [
                {"name": "micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "flag", "type": "boolean"},
                {"name": "ratio", "type": "float"},
                {"name": "big", "type": "long"},
                {"name": "nothing", "type": "null"},
                {"name": "later", "type": ["string", "null"]},
            ],
        }
    )
    write = compile_writer(schema)
    assert write is not None
    rng = random.Random(5)
    for _ in range(300):
        record = {
            "micros": _instant(rng),
            "flag": rng.random() < 0.5,
            "ratio": rng.choice([0.0, 1.5, -2.25, rng.random()]),
            "big": rng.choice([0, -1, 2**62, -(2**63), 2**63 - 1, rng.randint(-(2**40), 2**40)]),
            "nothing": None,
            "later": None if rng.random() < 0.5 else _text(rng),
        }
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        assert write(record) == buf.getvalue(), record
