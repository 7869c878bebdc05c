"""Webhook receiver: signatures, dedupe, bad input and suspension safety, with a fake publisher."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from pim_hub.sandbox.akeneo.catalogue import Catalogue, Change
from pim_hub.sandbox.akeneo.webhooks import (
    event_platform_webhook,
    legacy_webhook,
    sign_event_platform,
    sign_legacy,
)
from pim_hub.services.ingest.events import H_IGNORED, H_SOURCE
from pim_hub.services.ingest.settings import IngestSettings
from pim_hub.services.ingest.web import (
    EVENT_PLATFORM_PATH,
    EVENTS_API_PATH,
    Backpressure,
    PublishFailed,
    RawRecord,
    create_app,
)

LEGACY_SECRET = "legacy-secret"
EP_PRIMARY = "ep-primary-secret"
EP_SECONDARY = "ep-secondary-secret"


class FakePublisher:
    """Records what would be written; can be told to fail."""

    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.fail: Exception | None = None

    async def publish(self, records: Sequence[RawRecord]) -> None:
        if self.fail is not None:
            raise self.fail
        self.records.extend(records)


def settings(**over: Any) -> IngestSettings:
    base: dict[str, Any] = {
        "events_api_secret": SecretStr(LEGACY_SECRET),
        "event_platform_secret_primary": SecretStr(EP_PRIMARY),
        "event_platform_secret_secondary": SecretStr(EP_SECONDARY),
        "own_connection": "hub_connection_0001,hub-client-id",
        "max_body_bytes": 64 * 1024,
    }
    base.update(over)
    return IngestSettings(**base)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(publisher: FakePublisher) -> TestClient:
    return TestClient(create_app(settings(), publisher), raise_server_exceptions=True)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue(60, seed=5)


def edit(catalogue: Catalogue, n: int = 0, author: str = "julia") -> Change:
    uuid = catalogue.product_uuid(n)
    return catalogue.update_product(
        uuid,
        values={"is_new": [{"locale": None, "scope": None, "data": bool(time.time_ns() % 2)}]},
        author=author,
        author_type="api" if author != "julia" else "ui",
    )


def post(client: TestClient, path: str, headers: dict[str, str], body: bytes) -> Any:
    return client.post(path, content=body, headers=headers)


# ------------------------------------------------------------------------- Events API
def test_signed_legacy_batch_is_published_keyed_by_entity(client, publisher, catalogue):
    changes = [edit(catalogue, n) for n in range(3)]
    hook = legacy_webhook(changes, secret=LEGACY_SECRET)
    resp = post(client, EVENTS_API_PATH, hook.headers, hook.body)
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 3, "ignored": 0, "duplicates": 0}
    assert [r.key for r in publisher.records] == [f"product:{c.key}" for c in changes]
    sent = orjson.loads(hook.body)["events"]
    # Akeneo's own JSON is kept, one record per event.
    assert [orjson.loads(r.value) for r in publisher.records] == sent
    assert dict(publisher.records[0].headers)[H_SOURCE] == "events-api"


def test_legacy_wrong_secret_missing_or_stale_signature_is_401(client, publisher, catalogue):
    change = edit(catalogue)
    wrong = legacy_webhook([change], secret="not-the-secret")
    assert post(client, EVENTS_API_PATH, wrong.headers, wrong.body).status_code == 401
    stale = legacy_webhook([change], secret=LEGACY_SECRET, timestamp=int(time.time()) - 301)
    assert post(client, EVENTS_API_PATH, stale.headers, stale.body).status_code == 401
    good = legacy_webhook([change], secret=LEGACY_SECRET)
    unsigned = {"Content-Type": "application/json"}
    assert post(client, EVENTS_API_PATH, unsigned, good.body).status_code == 401
    tampered = good.body.replace(b"julia", b"mallory")
    assert post(client, EVENTS_API_PATH, good.headers, tampered).status_code == 401
    assert publisher.records == []
    metrics = client.app.state.metrics
    assert (
        metrics.value("hub_ingest_webhook_requests", endpoint="events-api", outcome="bad_signature")
        == 4
    )


def test_legacy_previous_secret_still_accepted_while_rotating(publisher, catalogue):
    app = create_app(
        settings(events_api_secret=SecretStr("new"), events_api_secret_previous=SecretStr("old")),
        publisher,
    )
    with TestClient(app) as c:
        for secret in ("old", "new"):
            hook = legacy_webhook([edit(catalogue)], secret=secret)
            assert post(c, EVENTS_API_PATH, hook.headers, hook.body).status_code == 200


def signed_legacy(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "X-Akeneo-Request-Timestamp": stamp,
        "X-Akeneo-Request-Signature": sign_legacy(LEGACY_SECRET, stamp, body),
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "not JSON"),
        (b"[]", 422, "'events' list"),
        (b'{"events": []}', 422, "non-empty"),
        (b'{"events": [{"action": "product.updated", "data": {}}]}', 422, "events[0].event_id"),
        (
            b'{"events": [{"event_id": "e1", "action": "product.updated", "data": {"resource": {}}}]}',
            422,
            "uuid",
        ),
    ],
)
def test_legacy_bad_input_gets_a_reason(client, publisher, body, status, reason):
    resp = post(client, EVENTS_API_PATH, signed_legacy(body), body)
    assert resp.status_code == status
    assert reason in resp.json()["error"]
    assert publisher.records == []


def test_more_than_ten_legacy_events_is_422(client, catalogue):
    event = orjson.loads(legacy_webhook([edit(catalogue)], secret="x").body)["events"][0]
    body = orjson.dumps({"events": [{**event, "event_id": f"e{i}"} for i in range(11)]})
    assert post(client, EVENTS_API_PATH, signed_legacy(body), body).status_code == 422


def test_body_over_the_limit_is_413(client, publisher):
    body = b'{"events": [' + b" " * (70 * 1024) + b"]}"
    assert post(client, EVENTS_API_PATH, signed_legacy(body), body).status_code == 413
    assert publisher.records == []


def test_duplicate_event_ids_are_published_once(client, publisher, catalogue):
    change = edit(catalogue)
    first = legacy_webhook([change], secret=LEGACY_SECRET, event_ids=["dup-1"])
    again = legacy_webhook(
        [change, edit(catalogue, 1)], secret=LEGACY_SECRET, event_ids=["dup-1", "new-2"]
    )
    assert post(client, EVENTS_API_PATH, first.headers, first.body).json()["accepted"] == 1
    resp = post(client, EVENTS_API_PATH, again.headers, again.body)
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 1, "ignored": 0, "duplicates": 1}
    assert [dict(r.headers)["hub-event-id"] for r in publisher.records] == ["dup-1", "new-2"]


def test_failed_write_does_not_mark_the_event_seen(client, publisher, catalogue):
    hook = legacy_webhook([edit(catalogue)], secret=LEGACY_SECRET, event_ids=["retry-me"])
    publisher.fail = PublishFailed("broker down")
    assert post(client, EVENTS_API_PATH, hook.headers, hook.body).status_code == 503
    publisher.fail = None
    assert post(client, EVENTS_API_PATH, hook.headers, hook.body).json()["accepted"] == 1


def test_backpressure_answers_429(client, publisher, catalogue):
    publisher.fail = Backpressure("queue full")
    hook = event_platform_webhook(edit(catalogue), primary_secret=EP_PRIMARY)
    resp = post(client, EVENT_PLATFORM_PATH, hook.headers, hook.body)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "1"


def test_unknown_event_type_is_accepted_and_kept_flagged(client, publisher):
    event = {
        "action": "asset.updated",
        "event_id": "u-1",
        "event_datetime": datetime.now(UTC).isoformat(),
        "author": "julia",
        "author_type": "ui",
        "pim_source": "x",
        "data": {"resource": {"code": "a"}},
    }
    body = orjson.dumps({"events": [event]})
    resp = post(client, EVENTS_API_PATH, signed_legacy(body), body)
    assert resp.json() == {"accepted": 0, "ignored": 1, "duplicates": 0}
    assert "unsupported event type asset.updated" in dict(publisher.records[0].headers)[H_IGNORED]
    metrics = client.app.state.metrics
    assert metrics.value("hub_ingest_webhook_events", endpoint="events-api", outcome="ignored") == 1


def test_events_by_the_hubs_own_connection_are_flagged_ignored(client, publisher, catalogue):
    hook = legacy_webhook([edit(catalogue, author="hub_connection_0001")], secret=LEGACY_SECRET)
    assert post(client, EVENTS_API_PATH, hook.headers, hook.body).json()["ignored"] == 1
    assert dict(publisher.records[0].headers)[H_IGNORED] == "own connection"
    ep = event_platform_webhook(edit(catalogue, author="hub-client-id"), primary_secret=EP_PRIMARY)
    assert post(client, EVENT_PLATFORM_PATH, ep.headers, ep.body).json()["ignored"] == 1


# ------------------------------------------------------------------------- Event Platform
def test_event_platform_primary_or_secondary_signature(client, publisher, catalogue):
    hook = event_platform_webhook(edit(catalogue), primary_secret=EP_PRIMARY)
    assert post(client, EVENT_PLATFORM_PATH, hook.headers, hook.body).status_code == 200
    # Akeneo rotated: its primary is now our secondary.
    rotated = event_platform_webhook(
        edit(catalogue), primary_secret=EP_SECONDARY, secondary_secret="next"
    )
    assert post(client, EVENT_PLATFORM_PATH, rotated.headers, rotated.body).status_code == 200
    bad = event_platform_webhook(edit(catalogue), primary_secret="nope", secondary_secret="nope2")
    assert post(client, EVENT_PLATFORM_PATH, bad.headers, bad.body).status_code == 401
    body = hook.body
    assert (
        post(client, EVENT_PLATFORM_PATH, {"Content-Type": "application/json"}, body).status_code
        == 401
    )
    assert len(publisher.records) == 2
    assert publisher.records[0].key.startswith("product:")
    assert dict(publisher.records[0].headers)[H_SOURCE] == "event-platform"


def ep_headers(body: bytes) -> dict[str, str]:
    return {"X-AKENEO-SIGNATURE-PRIMARY": sign_event_platform(EP_PRIMARY, body)}


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"\xff\xfe", 400, "not JSON"),
        (b'"text"', 422, "CloudEvents"),
        (b'{"specversion": "0.3", "id": "1", "type": "t", "source": "pim"}', 422, "specversion"),
        (b'{"specversion": "1.0", "type": "t", "source": "pim"}', 422, "event.id"),
        (
            b'{"specversion": "1.0", "id": "1", "type": "com.akeneo.pim.v1.product.updated", '
            b'"source": "pim", "data": {"product": {}}}',
            422,
            "data.product.uuid",
        ),
    ],
)
def test_event_platform_bad_input(client, publisher, body, status, reason):
    resp = post(client, EVENT_PLATFORM_PATH, ep_headers(body), body)
    assert resp.status_code == status
    assert reason in resp.json()["error"]
    assert publisher.records == []


def test_event_platform_dedupes_on_id(client, publisher, catalogue):
    change = edit(catalogue)
    hook = event_platform_webhook(change, primary_secret=EP_PRIMARY, event_id="ep-dup")
    for _ in range(3):
        assert post(client, EVENT_PLATFORM_PATH, hook.headers, hook.body).status_code == 200
    assert len(publisher.records) == 1


def test_unknown_cloud_event_type_is_accepted(client, publisher):
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "x1",
            "type": "com.akeneo.pim.v1.asset.updated",
            "source": "pim",
            "data": {},
        }
    )
    resp = post(client, EVENT_PLATFORM_PATH, ep_headers(body), body)
    assert resp.status_code == 200 and resp.json()["ignored"] == 1
    assert H_IGNORED in dict(publisher.records[0].headers)


# ------------------------------------------------------------------------- suspension safety
def test_signed_requests_never_get_404_or_redirects(client, publisher, catalogue):
    legacy = legacy_webhook([edit(catalogue)], secret=LEGACY_SECRET)
    ep = event_platform_webhook(edit(catalogue), primary_secret=EP_PRIMARY)
    for path in (EVENTS_API_PATH + "/", "/", "/akeneo/old-url", EVENT_PLATFORM_PATH + "/"):
        for hook in (legacy, ep):
            resp = client.post(
                path, content=hook.body, headers=hook.headers, follow_redirects=False
            )
            assert resp.status_code == 200, (path, resp.status_code)
    # A request bearing a bad signature is answered 401, not 404, wherever it lands.
    resp = client.post("/nowhere", content=b"{}", headers={"X-AKENEO-SIGNATURE-PRIMARY": "00"})
    assert resp.status_code == 401
    # Unsigned noise on an unknown path is a plain 404.
    assert client.post("/nowhere", content=b"{}").status_code == 404


def test_broker_failure_is_5xx_not_404(client, publisher, catalogue):
    publisher.fail = PublishFailed("timeout")
    hook = event_platform_webhook(edit(catalogue), primary_secret=EP_PRIMARY)
    assert post(client, EVENT_PLATFORM_PATH, hook.headers, hook.body).status_code == 503


def test_unconfigured_secret_rejects_everything(publisher, catalogue):
    app = create_app(IngestSettings(), publisher)
    with TestClient(app) as c:
        hook = legacy_webhook([edit(catalogue)], secret="")
        assert post(c, EVENTS_API_PATH, hook.headers, hook.body).status_code == 401
