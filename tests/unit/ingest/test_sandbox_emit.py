"""A separately running sandbox edits its catalogue and sends signed webhooks on request."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from pim_hub.sandbox.akeneo.app import create_app as sandbox_app
from pim_hub.sandbox.akeneo.catalogue import Catalogue
from pim_hub.sandbox.akeneo.control import EMIT_PATH
from pim_hub.sandbox.akeneo.server import serve_in_thread
from pim_hub.services.ingest.settings import IngestSettings
from pim_hub.services.ingest.web import EVENT_PLATFORM_PATH, EVENTS_API_PATH, create_app
from tests.unit.ingest.test_web import FakePublisher


def test_emit_sends_both_kinds_that_the_receiver_accepts() -> None:
    publisher = FakePublisher()
    receiver = create_app(
        IngestSettings(
            events_api_secret=SecretStr("ls"), event_platform_secret_primary=SecretStr("ep")
        ),
        publisher,
    )
    catalogue = Catalogue(200, seed=8)
    pim = sandbox_app(catalogue, client_id="c", secret="s", username="u", password="p")
    with serve_in_thread(receiver) as hub_url, serve_in_thread(pim) as pim_url:
        legacy = httpx.post(
            pim_url + EMIT_PATH,
            json={"url": hub_url + EVENTS_API_PATH, "secret": "ls", "count": 25, "seed": 1},
            timeout=30,
        ).json()
        assert legacy["requests"] == 3 and legacy["statuses"] == {"200": 3}
        ep = httpx.post(
            pim_url + EMIT_PATH,
            json={
                "url": hub_url + EVENT_PLATFORM_PATH,
                "kind": "event-platform",
                "secret": "ep",
                "count": 5,
                "delta": True,
                "seed": 2,
            },
            timeout=30,
        ).json()
        assert ep["statuses"] == {"200": 5}
        wrong = httpx.post(
            pim_url + EMIT_PATH,
            json={"url": hub_url + EVENTS_API_PATH, "secret": "bad", "count": 1},
            timeout=30,
        ).json()
        assert wrong["statuses"] == {"401": 1}
        assert httpx.post(pim_url + EMIT_PATH, json={"count": 1}).status_code == 422
    assert len(publisher.records) == 30
    keys = {r.key for r in publisher.records}
    assert all(k is not None and k.split(":")[0] in ("product", "product_model") for k in keys)
