"""Webhook receiver against hostile input: never a 5xx, always a clear reason."""

from __future__ import annotations

import orjson
import pytest
from starlette.testclient import TestClient

from pim_hub.services.ingest.web import EVENT_PLATFORM_PATH, EVENTS_API_PATH, create_app
from tests.unit.ingest.test_web import FakePublisher, ep_headers, settings, signed_legacy


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(publisher: FakePublisher) -> TestClient:
    # raise_server_exceptions=False: a crash is seen as the 500 a client would get.
    return TestClient(create_app(settings(), publisher), raise_server_exceptions=False)


def _legacy_event(uuid: str, event_id: str = "e-1") -> dict[str, object]:
    return {
        "event_id": event_id,
        "action": "product.updated",
        "author": "julia",
        "data": {"resource": {"uuid": uuid, "identifier": "SKU-1", "values": {}}},
    }


def _cloud_event(event_id: str, uuid: str) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": "com.akeneo.pim.v1.product.updated",
        "source": "pim",
        "data": {"product": {"uuid": uuid}},
    }


@pytest.mark.parametrize(
    "event",
    [
        _legacy_event("0c6a5a1e-0000-4000-8000-00000000000\x00"),
        _legacy_event("0c6a5a1e-0000-4000-8000-000000000001", event_id="e\x00-1"),
        _legacy_event("0c6a5a1e-0000-4000\r\n-8000-000000000001"),
    ],
)
def test_nul_or_newline_in_an_events_api_key_or_id_is_refused_with_a_reason(
    client: TestClient, publisher: FakePublisher, event: dict[str, object]
) -> None:
    body = orjson.dumps({"events": [event]})
    resp = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert resp.status_code == 422
    assert "control character" in resp.json()["error"]
    assert publisher.records == []


@pytest.mark.parametrize(
    "event",
    [
        _cloud_event("ep-\x00", "0c6a5a1e-0000-4000-8000-000000000001"),
        _cloud_event("ep-1", "0c6a5a1e-0000-4000-8000-00000000000\x00"),
    ],
)
def test_nul_in_an_event_platform_id_or_uuid_is_refused_with_a_reason(
    client: TestClient, publisher: FakePublisher, event: dict[str, object]
) -> None:
    body = orjson.dumps(event)
    resp = client.post(EVENT_PLATFORM_PATH, content=body, headers=ep_headers(body))
    assert resp.status_code == 422
    assert "control character" in resp.json()["error"]
    assert publisher.records == []
