"""Poison snapshots become invalid outcomes with a reason code; they never raise out of the mutator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from pim_hub.schemas.errors import InvalidSnapshot
from pim_hub.schemas.limits import (
    MAX_JSON_DEPTH,
    MAX_VALUE_CHARS,
    check_json_text,
    json_depth_exceeds,
    record_budget,
)
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.versions import check_version
from pim_hub.services.mutator.processing import (
    Invalid,
    Outcome,
    SnapshotProcessor,
    encode_mutation,
    invalid_headers,
    set_aside_record,
)

UID = "00000000-0000-4000-8000-000000000023"
V1 = "2024-05-01T10:00:00+00:00"


def _product(values: dict[str, Any], uid: str = UID) -> dict[str, Any]:
    return {"uuid": uid, "identifier": "SKU-23", "values": values, "updated": V1}


def _text(attribute: str, data: Any) -> dict[str, Any]:
    return {attribute: [{"locale": None, "scope": None, "data": data}]}


def _encode(serde: Serde, payload_text: str | None, key: str = f"product:{UID}") -> bytes:
    record = snapshot_record("product", key, None, V1, "external")
    record["payload"] = payload_text
    return serde.encode("Snapshot", record)


def _process(payload_text: str | None, key: str = f"product:{UID}") -> Outcome:
    serde = Serde()
    return SnapshotProcessor(serde).process(
        key.encode(), _encode(serde, payload_text, key), lambda _k: None
    )


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_a_snapshot_nested_300_deep_is_invalid_not_a_crash() -> None:
    # orjson reads 1,024 levels but writes only 254: this raised TypeError out of normalise.
    payload = orjson.dumps(_product(_text("name", "x"))).decode()
    payload = payload[:-1] + ',"deep":' + _nested(300) + "}"
    outcome = _process(payload)
    assert outcome.kind == "invalid"
    assert outcome.invalid is not None
    assert outcome.invalid.code == "too_deep"
    assert str(MAX_JSON_DEPTH) in outcome.invalid.reason


def test_depth_just_inside_the_limit_is_accepted() -> None:
    assert not json_depth_exceeds(orjson.loads(_nested(MAX_JSON_DEPTH)))
    assert json_depth_exceeds(orjson.loads(_nested(MAX_JSON_DEPTH + 1)))
    # A product holds its data 4 levels down (object, values, list, item).
    inside = orjson.loads(_nested(MAX_JSON_DEPTH - 4))
    outcome = _process(orjson.dumps(_product(_text("name", inside))).decode())
    assert outcome.kind == "mutation"
    beyond = orjson.loads(_nested(MAX_JSON_DEPTH - 3))
    assert _process(orjson.dumps(_product(_text("name", beyond))).decode()).kind == "invalid"


def test_a_value_too_large_is_invalid_at_validation() -> None:
    outcome = _process(orjson.dumps(_product(_text("description", "x" * MAX_VALUE_CHARS))).decode())
    assert outcome.kind == "invalid"
    assert outcome.invalid is not None and outcome.invalid.code == "value_too_large"
    assert "values|description" in outcome.invalid.reason


def test_nul_in_the_product_uuid_is_invalid() -> None:
    uid = UID[:-1] + "\x00"
    outcome = _process(
        orjson.dumps(_product(_text("name", "x"), uid=uid)).decode(), f"product:{uid}"
    )
    assert outcome.kind == "invalid"
    assert outcome.invalid is not None and outcome.invalid.code == "control_character"


def test_nul_in_the_entity_key_of_a_tombstone_is_invalid() -> None:
    outcome = _process(None, "product:abc\x00")
    assert outcome.kind == "invalid"
    assert outcome.invalid is not None and outcome.invalid.code == "control_character"


def test_nul_anywhere_in_a_value_is_invalid() -> None:
    # PostgreSQL text and jsonb refuse NUL: the projections could never store this entity.
    outcome = _process(orjson.dumps(_product(_text("name", "a\x00b"))).decode())
    assert outcome.kind == "invalid"
    assert outcome.invalid is not None and outcome.invalid.code == "control_character"


def test_an_escaped_backslash_u0000_text_is_not_a_nul() -> None:
    # The JSON text `\\u0000` is a backslash then "u0000": no NUL, accepted.
    outcome = _process(orjson.dumps(_product(_text("name", "\\u0000"))).decode())
    assert outcome.kind == "mutation"
    with pytest.raises(ValueError, match="NUL"):
        check_json_text("x", '"\\u0000"', "\x00")


def _mutation_outcome(size: int) -> Outcome:
    values: dict[str, Any] = {}
    # Several values each under the per-value limit, together beyond the record budget.
    chunk = MAX_VALUE_CHARS - 100
    for i in range(size // chunk + 1):
        values.update(_text(f"text_{i}", "y" * chunk))
    return _process(orjson.dumps(_product(values)).decode())


def test_a_mutation_above_the_record_budget_is_set_aside_as_too_large() -> None:
    budget = record_budget(1_000_000)
    outcome = _mutation_outcome(600_000)  # the snapshot fits; changes + state do not
    assert outcome.kind == "mutation"
    serde = Serde()
    checked, encoded = encode_mutation(serde, outcome, b"k", b"v", budget)
    assert encoded is None
    assert checked.kind == "invalid"
    assert checked.invalid is not None and checked.invalid.code == "too_large"
    assert checked.new_state is None  # the entity keeps its previous state
    assert "HUB_KAFKA__MESSAGE_MAX_BYTES" in checked.invalid.reason
    # With a broker that takes larger records, the same mutation goes through.
    same, encoded = encode_mutation(serde, outcome, b"k", b"v", record_budget(4_000_000))
    assert same is outcome and encoded is not None and len(encoded) > budget


def test_the_set_aside_record_carries_reason_and_code_and_fits() -> None:
    invalid = Invalid("too big", b"key", b"x" * 999_000, "product", "too_large")
    headers = dict(invalid_headers(invalid))
    assert headers["error.reason"] == b"too_large"
    assert headers["error.message"] == b"too big"
    value, key, with_drop = set_aside_record(invalid, 1_000_000)
    assert key == b"key"
    assert value is None  # value + headers would pass the limit: kept without the value
    assert dict(with_drop)["error.value_dropped"] == b"999000 bytes"
    small = Invalid("bad", b"key", b"abc", "product", "invalid")
    assert set_aside_record(small, 1_000_000)[0] == b"abc"


# ------------------------------------------------------------------------- versions
def _versioned(updated: object, source_version: str | None, now: datetime) -> Outcome:
    serde = Serde()
    payload = {"uuid": UID, "identifier": "SKU-23", "values": {}, "updated": updated}
    record = snapshot_record("product", f"product:{UID}", payload, source_version, "external")
    processor = SnapshotProcessor(serde, now=lambda: now, max_future_s=86_400)
    return processor.process(b"k", serde.encode("Snapshot", record), lambda _k: None)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_create_whose_updated_is_not_a_date_is_invalid() -> None:
    # Accepted before, after which every update of the entity was invalid.
    outcome = _versioned("not-a-date", None, NOW)
    assert outcome.kind == "invalid"
    assert outcome.invalid is not None and outcome.invalid.code == "bad_version"
    assert "not-a-date" in outcome.invalid.reason
    assert _versioned(V1, "yesterday", NOW).kind == "invalid"


def test_a_version_far_in_the_future_is_invalid_not_a_frozen_entity() -> None:
    outcome = _versioned("9999-12-31T23:59:59+00:00", None, NOW)
    assert outcome.kind == "invalid"
    assert outcome.invalid is not None and outcome.invalid.code == "version_in_future"
    assert "HUB_VERSION_MAX_FUTURE_S" in outcome.invalid.reason
    # Inside the window (clock skew): accepted.
    assert _versioned("2026-01-01T23:00:00+00:00", None, NOW).kind == "mutation"
    assert _versioned(V1, "2026-01-02T00:00:01+00:00", NOW).kind == "invalid"


def test_check_version_window_is_configurable() -> None:
    assert check_version("2026-01-03T00:00:00Z", NOW, 3 * 86_400) > NOW
    with pytest.raises(InvalidSnapshot) as info:
        check_version("2026-01-03T00:00:00Z", NOW, 86_400)
    assert info.value.code == "version_in_future"
