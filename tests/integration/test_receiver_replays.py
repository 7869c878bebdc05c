"""Replay protection of the webhook receiver across restarts, on the real PostgreSQL."""

from __future__ import annotations

import time

import orjson
import psycopg
import pytest
from starlette.testclient import TestClient

from pim_hub.services.ingest.dedupe import ENRICHER_GROUP, HandledLookup
from pim_hub.services.ingest.web import EVENT_PLATFORM_PATH, EVENTS_API_PATH, create_app
from tests.unit.ingest.test_web import FakePublisher, ep_headers, settings, signed_legacy

pytestmark = pytest.mark.integration


def _legacy(event_id: str) -> bytes:
    event = {
        "event_id": event_id,
        "action": "product.updated",
        "author": "julia",
        "data": {"resource": {"uuid": "0c6a5a1e-0000-4000-8000-000000000011", "values": {}}},
    }
    return orjson.dumps({"events": [event]})


def test_a_request_replayed_after_a_restart_is_a_duplicate(database_url: str, unique: str) -> None:
    handled_id, fresh_id = f"handled-{unique}", f"fresh-{unique}"
    # What the enricher recorded before this (new) receiver process started.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ingest_handled_events (consumer_group, event_id) VALUES (%s, %s)",
            (ENRICHER_GROUP, handled_id),
        )
    publisher = FakePublisher()
    lookup = HandledLookup(database_url)
    client = TestClient(create_app(settings(), publisher, handled=lookup.known))
    replayed = _legacy(handled_id)
    resp = client.post(EVENTS_API_PATH, content=replayed, headers=signed_legacy(replayed))
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 0, "ignored": 0, "duplicates": 1}
    assert publisher.records == []
    cloud = orjson.dumps(
        {
            "specversion": "1.0",
            "id": handled_id,
            "type": "com.akeneo.pim.v1.product.updated",
            "source": "pim",
            "data": {"product": {"uuid": "0c6a5a1e-0000-4000-8000-000000000011"}},
        }
    )
    resp = client.post(EVENT_PLATFORM_PATH, content=cloud, headers=ep_headers(cloud))
    assert resp.json()["duplicates"] == 1 and publisher.records == []
    new = _legacy(fresh_id)
    resp = client.post(EVENTS_API_PATH, content=new, headers=signed_legacy(new))
    assert resp.json() == {"accepted": 1, "ignored": 0, "duplicates": 0}


def test_an_unavailable_database_does_not_hold_the_answer(unique: str) -> None:
    publisher = FakePublisher()
    lookup = HandledLookup("postgresql://127.0.0.1:1/none?connect_timeout=5", timeout_s=0.2)
    client = TestClient(create_app(settings(), publisher, handled=lookup.known))
    body = _legacy(f"any-{unique}")
    started = time.monotonic()
    resp = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert resp.status_code == 200 and len(publisher.records) == 1
    assert time.monotonic() - started < 0.5  # the Events API's budget
