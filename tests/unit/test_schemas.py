"""Event schemas: the .avsc files, the pydantic views, old records and the wire framing."""

from __future__ import annotations

import io
import json
import struct
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pim_hub.schemas import serde as serde_mod
from pim_hub.schemas.errors import SchemaError, UnknownSchemaVersion
from pim_hub.schemas.events import MODELS
from pim_hub.schemas.serde import SINGLE_OBJECT_MAGIC, Serde, all_versions, current
from tests.registry_double import FakeSchemaRegistry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "avro"


def _avro_fields(event: str) -> dict[str, tuple[bool, Any]]:
    """field -> (nullable, default marker) of the current .avsc."""
    out = {}
    for f in current(event).raw["fields"]:
        typ = f["type"]
        nullable = isinstance(typ, list) and "null" in typ
        out[f["name"]] = (nullable, "default" in f)
    return out


@pytest.mark.parametrize("event", sorted(MODELS))
def test_pydantic_view_matches_avsc(event: str) -> None:
    model = MODELS[event]
    avro = _avro_fields(event)
    assert set(model.model_fields) == set(avro), "same field names in both"
    for name, field in model.model_fields.items():
        nullable, _ = avro[name]
        model_nullable = type(None) in typing.get_args(field.annotation)
        assert model_nullable == nullable, f"{event}.{name}: nullability differs"


def test_change_model_matches_nested_avro_record() -> None:
    change_schema = next(f for f in current("Mutation").raw["fields"] if f["name"] == "changes")
    avro_names = {f["name"] for f in change_schema["type"]["items"]["fields"]}
    (change_model,) = typing.get_args(MODELS["Mutation"].model_fields["changes"].annotation)
    assert avro_names == set(change_model.model_fields)


def test_released_schemas_are_unchanged() -> None:
    released = json.loads((serde_mod.AVRO_DIR / "RELEASED.json").read_text())
    on_disk = {
        f"v{v.version}/{name}": v.fingerprint.hex()
        for name, vs in all_versions().items()
        for v in vs
    }
    for key, fp in released.items():
        assert on_disk.get(key) == fp, (
            f"released schema {key} was edited: add a new version instead"
        )


@pytest.mark.parametrize("event", sorted(MODELS))
def test_new_readers_decode_every_released_version(event: str) -> None:
    # A version directory holds only the events it changed: one fixture per released version.
    released = [v.version for v in all_versions()[event]]
    assert sorted(int(p.parent.name[1:]) for p in FIXTURES.glob(f"v*/{event}.bin")) == released
    for version in released:
        data = (FIXTURES / f"v{version}" / f"{event}.bin").read_bytes()
        record = Serde().decode(event, data)
        MODELS[event].model_validate(record)  # and the in-process view accepts it
        assert record[next(iter(current(event).raw["fields"]))["name"]]


def test_delivery_status_v1_reads_without_operation_and_v2_with_it() -> None:
    old = Serde().decode("DeliveryStatus", (FIXTURES / "v1" / "DeliveryStatus.bin").read_bytes())
    new = Serde().decode("DeliveryStatus", (FIXTURES / "v2" / "DeliveryStatus.bin").read_bytes())
    assert old["operation"] is None
    assert new["operation"] == "update"
    # The v1 reader (an outside consumer that has not upgraded) reads what the hub writes now.
    import fastavro

    v1 = all_versions()["DeliveryStatus"][0]
    body = Serde().encode("DeliveryStatus", new)[10:]
    seen = fastavro.schemaless_reader(io.BytesIO(body), current("DeliveryStatus").parsed, v1.parsed)
    assert seen == {k: v for k, v in new.items() if k != "operation"}


def _sample(event: str) -> dict[str, Any]:
    return Serde().decode(event, (FIXTURES / "v1" / f"{event}.bin").read_bytes())


@pytest.mark.parametrize("event", sorted(MODELS))
def test_round_trip_uses_single_object_encoding(event: str) -> None:
    record = _sample(event)
    data = Serde().encode(event, record)
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert data[2:10] == current(event).fingerprint
    assert Serde().decode(event, data) == record


def test_fingerprint_is_little_endian_crc64_avro() -> None:
    # Spec example: the CRC-64-AVRO fingerprint of the schema "string" is 0x8f014872634503c7
    # stored little-endian in the single-object header.
    from fastavro.schema import fingerprint

    assert fingerprint('"string"', "CRC-64-AVRO") == "c70345637248018f"


@pytest.mark.parametrize(
    "data",
    [b"", b"not avro at all", SINGLE_OBJECT_MAGIC + b"\x00" * 8 + b"x", b"\x00\x00\x00\x00\x01abc"],
)
def test_garbage_raises_a_typed_error(data: bytes) -> None:
    with pytest.raises(SchemaError):
        Serde().decode("Snapshot", data)


def test_unknown_fingerprint_is_unknown_schema_version() -> None:
    with pytest.raises(UnknownSchemaVersion):
        Serde().decode("Snapshot", SINGLE_OBJECT_MAGIC + b"\x01" * 8 + b"\x00")


def test_truncated_body_raises_schema_error() -> None:
    data = Serde().encode("Snapshot", _sample("Snapshot"))
    with pytest.raises(SchemaError, match="cannot decode"):
        Serde().decode("Snapshot", data[:20])


def test_record_of_another_event_is_refused() -> None:
    data = Serde().encode("DeliveryStatus", _sample("DeliveryStatus"))
    with pytest.raises(SchemaError, match="expected a Snapshot"):
        Serde().decode("Snapshot", data)


def test_encoding_a_bad_record_raises_schema_error() -> None:
    with pytest.raises(SchemaError, match="cannot encode"):
        Serde().encode("Snapshot", {"event_id": 1})


@pytest.fixture
def fake_registry() -> Iterator[FakeSchemaRegistry]:
    """A Schema Registry test double over HTTP (tests/registry_double.py)."""
    fake = FakeSchemaRegistry()
    yield fake
    fake.stop()


def test_schema_registry_framing_round_trip(fake_registry: FakeSchemaRegistry) -> None:
    writer = Serde(fake_registry.url)
    record = _sample("Mutation")
    data = writer.encode("Mutation", record, topic="hub.mutations")
    assert data[0:1] == b"\x00"
    (schema_id,) = struct.unpack(">I", data[1:5])
    assert fake_registry.state.subjects["hub.mutations-value"] == [schema_id]
    # A fresh reader knows nothing but the registry URL.
    reader = Serde(fake_registry.url)
    assert reader.decode("Mutation", data) == record
    with pytest.raises(UnknownSchemaVersion):
        reader.decode("Mutation", b"\x00" + struct.pack(">I", 999) + data[5:])


def test_registry_framing_without_registry_is_a_clear_error() -> None:
    with pytest.raises(SchemaError, match="HUB_SCHEMA_REGISTRY_URL"):
        Serde().decode("Snapshot", b"\x00\x00\x00\x00\x01" + b"\x02")


def test_job_schema_embeds_the_mutation_schema() -> None:
    job_fields = {f["name"]: f for f in current("Job").raw["fields"]}
    assert job_fields["mutation"]["type"]["name"] == "Mutation"
    assert {f["name"] for f in job_fields["mutation"]["type"]["fields"]} == set(
        MODELS["Mutation"].model_fields
    )


def _job_of(mutation: dict[str, Any]) -> dict[str, Any]:
    job = _sample("Job")
    job["mutation"] = mutation
    return job


def test_job_embedding_the_mutation_bytes_equals_a_full_encoding() -> None:
    mutation = _sample("Mutation")
    encoded = Serde().encode("Mutation", mutation)
    job = _job_of(mutation)
    spliced = Serde().encode_embedding("Job", job, "mutation", encoded)
    assert spliced == Serde().encode("Job", job)
    assert Serde().decode("Job", spliced) == job


def test_job_embedding_takes_the_mutation_from_the_bytes() -> None:
    mutation = _sample("Mutation")
    encoded = Serde().encode("Mutation", mutation)
    # The bytes are what goes in: a decoded value that differs is not used.
    job = _job_of({**mutation, "entity_key": "product:other"})
    decoded = Serde().decode("Job", Serde().encode_embedding("Job", job, "mutation", encoded))
    assert decoded["mutation"] == mutation
    assert decoded["job_id"] == job["job_id"] and decoded["created_at"] == job["created_at"]


@pytest.mark.parametrize(
    "encoded",
    [None, b"", b"\xc3\x01" + b"\x00" * 8 + b"\x02", b"\x00\x00\x00\x00\x07\x02"],
    ids=["none", "empty", "other-fingerprint", "registry-without-registry"],
)
def test_job_embedding_falls_back_to_the_decoded_mutation(encoded: bytes | None) -> None:
    job = _job_of(_sample("Mutation"))
    assert Serde().encode_embedding("Job", job, "mutation", encoded) == Serde().encode("Job", job)


def test_job_embedding_with_registry_framing(fake_registry: FakeSchemaRegistry) -> None:
    serde = Serde(fake_registry.url)
    mutation = _sample("Mutation")
    encoded = serde.encode("Mutation", mutation, topic="hub.mutations")
    job = _job_of(mutation)
    spliced = serde.encode_embedding("Job", job, "mutation", encoded, topic="hub.jobs.normal")
    assert spliced == serde.encode("Job", job, topic="hub.jobs.normal")
    assert serde.decode("Job", spliced) == job


def test_embedding_a_field_that_is_not_a_record_is_refused() -> None:
    with pytest.raises(SchemaError, match="not an inline record"):
        Serde().encode_embedding("Job", _sample("Job"), "driver", b"")


def test_decode_head_reads_the_first_fields_of_a_record_only() -> None:
    mutation = {**_sample("Mutation"), "operation": "create"}
    encoded = Serde().encode("Mutation", mutation)
    head = Serde().decode_head("Mutation", encoded, 4)
    assert head == {
        k: mutation[k] for k in ("mutation_id", "entity_type", "entity_key", "operation")
    }


def test_embeds_as_read_says_whether_the_bytes_go_in_as_they_are() -> None:
    encoded = Serde().encode("Mutation", _sample("Mutation"))
    assert Serde().embeds_as_read("Job", "mutation", encoded)
    assert not Serde().embeds_as_read("Job", "mutation", None)
    assert not Serde().embeds_as_read("Job", "mutation", b"\x00\x00\x00\x00\x07\x02")
