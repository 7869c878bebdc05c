"""The patch service's decisions without a broker: decoding, JSON Schema, ownership, waiting."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.ownership import patch_of
from pim_hub.schemas.serde import Serde
from pim_hub.services.patches.service import PatchService

UUID = "7c1a8d8e-0b7e-4f4e-9a52-2c7a4f4d1e01"


class _Clock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def _service(
    monkeypatch: pytest.MonkeyPatch,
    known: dict[str, str] | None = None,
    wait: str = "3",
    clock: _Clock | None = None,
) -> PatchService:
    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HUB_SOURCES", '{"erp": ["values.stock", "values.price"]}')
    monkeypatch.setenv("HUB_PATCHES_WAIT_S", wait)
    table = known if known is not None else {"ERP-0001": f"product:{UUID}"}

    def resolve(entity_type: str, identifier: str) -> str | None:
        if entity_type != "product":
            return f"{entity_type}:{identifier}"
        return table.get(identifier)

    return PatchService(Settings(), resolver=resolve, sleep=(clock or _Clock()).sleep)


def _json(**fields: Any) -> bytes:
    record = {
        "event_id": "e-1",
        "source": "erp",
        "entity_type": "product",
        "identifier": "ERP-0001",
        "version": "2024-05-02T10:11:12+00:00",
        "payload": {"values": {"stock": [{"locale": None, "scope": None, "data": 17}]}},
        **fields,
    }
    return orjson.dumps(record)


def test_a_json_patch_becomes_a_snapshot_keyed_by_the_entity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcome = _service(monkeypatch).decide(topics.PATCHES_JSON, _json())
    assert outcome.kind == "snapshot" and outcome.key == f"product:{UUID}"
    assert outcome.snapshot is not None
    assert outcome.snapshot["payload"] is None
    patch = patch_of(orjson.loads(outcome.snapshot["delta"]))
    assert patch == {
        "source": "erp",
        "mode": "patch",
        "identifier": "ERP-0001",
        "payload": {"values": {"stock": [{"locale": None, "scope": None, "data": 17}]}},
    }
    # It is a valid Snapshot record.
    Serde().encode("Snapshot", outcome.snapshot)


def test_an_avro_patch_decides_like_the_json_one(monkeypatch: pytest.MonkeyPatch) -> None:
    record = {
        "event_id": "e-2",
        "source": "erp",
        "entity_type": "product",
        "identifier": "ERP-0001",
        "mode": "replace",
        "version": "2024-05-02T10:11:12+00:00",
        "payload": '{"values": {"stock": [{"locale": null, "scope": null, "data": 3}]}}',
        "received_at": datetime(2024, 5, 2, tzinfo=UTC),
        "correlation_id": None,
    }
    outcome = _service(monkeypatch).decide(topics.PATCHES, Serde().encode("Patch", record))
    assert outcome.kind == "snapshot" and outcome.snapshot is not None
    assert patch_of(orjson.loads(outcome.snapshot["delta"]))["mode"] == "replace"  # type: ignore[index]


@pytest.mark.parametrize(
    "value,code,message",
    [
        (b"{not json", "bad_json", "not JSON"),
        (_json(identifier=""), "bad_schema", "identifier"),
        (_json(entity_type="thing"), "bad_schema", "entity_type"),
        (_json(payload={"values": {"stock": [{"scope": None}]}}), "bad_schema", "data"),
        (_json(payload={"labels": {"en_US": "x"}}), "bad_schema", "payload"),
        (_json(version="yesterday"), "bad_schema", "version"),
        (_json(extra=1), "bad_schema", "must not contain {'extra'}"),
        (
            _json(payload={"values": {"name": [{"locale": "en_US", "scope": None, "data": "x"}]}}),
            "not_owner",
            "values.name (owned by akeneo)",
        ),
        (_json(source="pricing"), "unknown_source", "unknown patch source 'pricing'"),
    ],
)
def test_bad_json_patches_are_refused_with_their_reason(
    monkeypatch: pytest.MonkeyPatch, value: bytes, code: str, message: str
) -> None:
    outcome = _service(monkeypatch).decide(topics.PATCHES_JSON, value)
    assert outcome.kind == "refused" and outcome.refused is not None
    assert outcome.refused.code == code
    assert message in str(outcome.refused)


def test_an_avro_patch_that_is_not_avro_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = _service(monkeypatch).decide(topics.PATCHES, _json())
    assert outcome.kind == "refused" and outcome.refused is not None
    assert outcome.refused.code == "bad_schema"


def test_a_patch_for_an_unseen_product_waits_then_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    known: dict[str, str] = {}
    service = _service(monkeypatch, known=known, wait="0.05", clock=clock)
    outcome = service.decide(topics.PATCHES_JSON, _json(identifier="NEW-1"))
    assert outcome.kind == "refused" and outcome.refused is not None
    assert outcome.refused.code == "unseen_entity"
    assert "no product with identifier 'NEW-1' after 0.05 s" in str(outcome.refused)
    assert clock.slept  # it waited before refusing

    # It arrives while the patch waits: the patch goes through.
    def arrive(seconds: float) -> None:
        known["NEW-2"] = "product:new-2"

    service.sleep = arrive
    service.conf = service.conf.__class__(service.conf.group, 5.0, service.conf.ownership)
    late = service.decide(topics.PATCHES_JSON, _json(identifier="NEW-2"))
    assert late.kind == "snapshot" and late.key == "product:new-2"


def test_refused_at_once_without_a_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    service = _service(monkeypatch, known={}, wait="0", clock=clock)
    outcome = service.decide(topics.PATCHES_JSON, _json(identifier="NEW-3"))
    assert outcome.kind == "refused" and not clock.slept


def test_codes_are_keys_for_other_entity_types(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = _service(monkeypatch).decide(
        topics.PATCHES_JSON, _json(entity_type="product_model", identifier="runner")
    )
    assert outcome.kind == "snapshot" and outcome.key == "product_model:runner"
