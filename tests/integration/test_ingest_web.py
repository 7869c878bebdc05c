"""Webhook receiver on the real broker: 200 only once pim.raw-events holds the events."""

from __future__ import annotations

import uuid

import orjson
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.sandbox.akeneo.webhooks import event_platform_webhook, legacy_webhook
from pim_hub.schemas.topics import RAW_EVENTS
from pim_hub.services.ingest.events import H_EVENT_ID, H_SOURCE
from pim_hub.services.ingest.settings import IngestSettings
from pim_hub.services.ingest.web import EVENT_PLATFORM_PATH, EVENTS_API_PATH, kafka_app
from tests.integration.test_ingest_support import read_matching

pytestmark = pytest.mark.integration


def test_acknowledged_webhooks_are_on_the_raw_topic_once(hub_settings: Settings) -> None:
    ingest = IngestSettings(
        events_api_secret=SecretStr("ls"), event_platform_secret_primary=SecretStr("ep")
    )
    cat = Catalogue(30, seed=2)
    changes = [cat.update_product(cat.product_uuid(n), enabled=False) for n in range(4)]
    ids = [f"it-{uuid.uuid4()}" for _ in range(3)]
    legacy = legacy_webhook(changes[:3], secret="ls", event_ids=ids)
    ep_id = f"it-{uuid.uuid4()}"
    ep = event_platform_webhook(changes[3], primary_secret="ep", event_id=ep_id)
    with TestClient(kafka_app(hub_settings, ingest)) as client:
        assert (
            client.post(EVENTS_API_PATH, content=legacy.body, headers=legacy.headers).status_code
            == 200
        )
        assert (
            client.post(EVENT_PLATFORM_PATH, content=ep.body, headers=ep.headers).status_code == 200
        )
        # Delivered again (at least once): acknowledged, not written again.
        again = client.post(EVENT_PLATFORM_PATH, content=ep.body, headers=ep.headers)
        assert again.json()["duplicates"] == 1
        bad = client.post(
            EVENTS_API_PATH, content=b"{}", headers={"X-Akeneo-Request-Signature": "0"}
        )
        assert bad.status_code == 401
    wanted = {*ids, ep_id}
    # The topic is shared with other tests: keep ours only.
    mine = read_matching(
        hub_settings,
        RAW_EVENTS,
        lambda m: dict(m.headers() or []).get(H_EVENT_ID, b"").decode() in wanted,
        4,
    )
    assert len(mine) == 4
    by_id = {dict(m.headers())[H_EVENT_ID].decode(): m for m in mine}
    assert orjson.loads(by_id[ep_id].value())["id"] == ep_id
    assert by_id[ep_id].key().decode() == f"product:{changes[3].key}"
    assert dict(by_id[ids[0]].headers())[H_SOURCE] == b"events-api"
