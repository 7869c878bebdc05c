"""Refused patches as `hub invalid` and `hub trace` read them, and their redrive's checks,
without a broker (the broker-backed path: tests/integration/test_patch_ops.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import Message

from pim_hub.ops import invalid, trace
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde

UUID = "7c1a8d8e-0b7e-4f4e-9a52-2c7a4f4d1e01"
STOCK = {"values": {"stock": [{"locale": None, "scope": None, "data": 17}]}}


class Msg:
    """A consumed message as confluent-kafka hands it over."""

    def __init__(
        self, topic: str, value: bytes, key: str, headers: dict[str, str], offset: int = 3
    ) -> None:
        self._topic, self._value, self._key, self._offset = topic, value, key, offset
        self._headers = [(k, v.encode()) for k, v in headers.items()]

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key.encode()

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000


def _m(msg: Msg) -> Message:
    return cast(Message, msg)


def _patch(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "source": "erp",
        "entity_type": "product",
        "identifier": "ERP-0001",
        "version": "2024-05-02T10:11:12+00:00",
        "payload": STOCK,
        **fields,
    }


def _refused(topic: str, value: bytes, code: str = "not_owner") -> Message:
    return _m(
        Msg(
            topics.SNAPSHOTS_INVALID,
            value,
            "product:ERP-0001",
            {
                "error.type": "invalid_patch",
                "error.reason": code,
                "error.message": "source erp may not change values.name (owned by akeneo)",
                "source.topic": topic,
            },
        )
    )


def _avro(serde: Serde, **fields: Any) -> bytes:
    record = {
        **_patch(**fields),
        "mode": "patch",
        "received_at": datetime.now(UTC),
        "correlation_id": None,
    }
    record["payload"] = orjson.dumps(record["payload"]).decode()
    return serde.encode("Patch", record, topic=topics.PATCHES)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HUB_SOURCES", '{"erp": ["values.stock"]}')
    return Settings()


@pytest.mark.parametrize("topic", [topics.PATCHES_JSON, topics.PATCHES])
def test_a_refused_patch_reads_as_a_patch(topic: str) -> None:
    serde = Serde()
    value = orjson.dumps(_patch()) if topic == topics.PATCHES_JSON else _avro(serde)
    rec = invalid.decode(_refused(topic, value), serde)
    assert (rec.kind, rec.entity_type, rec.code, rec.source_topic) == (
        "patch",
        "product",
        "not_owner",
        topic,
    )
    assert rec.patch is not None and rec.patch["payload"] == STOCK
    assert rec.summary()["source_topic"] == topic
    assert rec.detail()["patch"]["identifier"] == "ERP-0001"
    event = trace.invalid_event(_refused(topic, value), serde)
    assert event.data["kind"] == "patch" and event.data["event_id"] == "e-1"
    assert "patch e-1 refused (invalid_patch/not_owner)" in event.summary


def test_an_unreadable_refused_patch_is_still_listed_as_bytes() -> None:
    rec = invalid.decode(_refused(topics.PATCHES, b"\x00garbage"), Serde())
    assert rec.kind == "bytes" and rec.patch is None and rec.entity_type == "product"


def test_patch_events_are_marked_accepted_refused_or_pending() -> None:
    serde = Serde()
    sent = [
        trace.patch_event(
            _m(Msg(topics.PATCHES_JSON, b"", "product:ERP-0001", {})), _patch(event_id=e)
        )
        for e in ("a", "r", "p")
    ]
    assert sent[0].data["fields"] == ["values.stock"]
    refusal = trace.invalid_event(
        _refused(topics.PATCHES_JSON, orjson.dumps(_patch(event_id="r"))),
        serde,
    )
    snapshot = trace.TraceEvent(
        sent[0].at, "snapshot", topics.SNAPSHOTS, 0, 1, "", {"event_id": "a"}
    )
    marked = trace.mark_patch_outcomes([*sent, refusal, snapshot])
    assert [e.data.get("outcome") for e in marked[:3]] == ["accepted", "refused", "pending"]
    assert marked[1].summary.endswith("→ refused (not_owner)")


def test_patch_keys_of_a_sku_and_of_model_rows() -> None:
    assert trace.patch_keys_of("ERP-1", []) == ["product:ERP-1"]
    rows = [{"entity_type": "product", "code": "ERP-1"}, {"entity_type": "category", "code": "c"}]
    assert trace.patch_keys_of(f"product:{UUID}", rows) == ["product:ERP-1", "category:c"]


def _known(entity_type: str, identifier: str) -> str | None:
    return f"product:{UUID}" if identifier == "ERP-0001" else None


def test_redrive_refuses_what_the_patch_service_would_refuse(settings: Settings) -> None:
    serde = Serde()
    name = {"values": {"name": [{"locale": "en_US", "scope": None, "data": "x"}]}}
    rec = invalid.decode(_refused(topics.PATCHES_JSON, orjson.dumps(_patch(payload=name))), serde)
    with pytest.raises(invalid.InvalidRecordError, match=r"still refused \(not_owner\)"):
        invalid.redrive_patch(settings, rec, resolver=_known)
    unseen = invalid.decode(
        _refused(topics.PATCHES, _avro(serde, identifier="ERP-9"), "unseen_entity"), serde
    )
    with pytest.raises(invalid.InvalidRecordError, match=r"still refused \(unseen_entity\)"):
        invalid.redrive_patch(settings, unseen, resolver=_known)
    # Not from a patches topic: nothing to send it back to.
    elsewhere = invalid.decode(_refused(topics.PATCHES, _avro(serde)), serde)
    elsewhere.headers["source.topic"] = topics.SNAPSHOTS
    with pytest.raises(invalid.InvalidRecordError, match="cannot be sent back"):
        invalid.redrive_patch(settings, elsewhere, resolver=_known)
    monkey_settings = settings.model_copy(update={"database_url": None})
    with pytest.raises(invalid.InvalidRecordError, match="HUB_DATABASE_URL"):
        invalid.redrive_patch(monkey_settings, rec)
