"""Webhook receiver against hostile input: never a 5xx, always a clear reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException
from starlette.testclient import TestClient

from pim_hub.runtime import health
from pim_hub.runtime.health import Health
from pim_hub.sandbox.akeneo.webhooks import sign_event_platform, sign_legacy
from pim_hub.services.ingest.web import (
    EVENT_PLATFORM_PATH,
    EVENTS_API_PATH,
    KafkaPublisher,
    PublishFailed,
    RawRecord,
    create_app,
)
from tests.unit.ingest.test_web import (
    EP_SECONDARY,
    LEGACY_SECRET,
    FakePublisher,
    ep_headers,
    settings,
    signed_legacy,
)


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


# ------------------------------------------------------------------------- unauthenticated
def _metrics(client: TestClient) -> Any:
    return client.app.state.metrics  # type: ignore[attr-defined]


def test_a_non_ascii_signature_header_is_401_not_500(client: TestClient) -> None:
    body = orjson.dumps({"events": [_legacy_event("0c6a5a1e-0000-4000-8000-000000000001")]})
    headers = signed_legacy(body)
    raw_headers: dict[str, Any] = {**headers, "X-Akeneo-Request-Signature": "é".encode() * 32}
    resp = client.post(EVENTS_API_PATH, content=body, headers=raw_headers)
    assert resp.status_code == 401
    event = orjson.dumps(_cloud_event("ep-1", "0c6a5a1e-0000-4000-8000-000000000001"))
    bad_header: dict[str, Any] = {"X-Akeneo-Signature-Primary": b"\xe9" * 64}
    resp = client.post(EVENT_PLATFORM_PATH, content=event, headers=bad_header)
    assert resp.status_code == 401


def test_a_400_digit_timestamp_is_401_not_500(client: TestClient) -> None:
    body = orjson.dumps({"events": [_legacy_event("0c6a5a1e-0000-4000-8000-000000000001")]})
    stamp = "9" * 400
    headers = {
        "X-Akeneo-Request-Timestamp": stamp,
        "X-Akeneo-Request-Signature": sign_legacy(LEGACY_SECRET, stamp, body),
    }
    resp = client.post(EVENTS_API_PATH, content=body, headers=headers)
    assert resp.status_code == 401
    assert "unix seconds" in resp.json()["error"]


def test_a_valid_secondary_signature_next_to_a_junk_primary_is_accepted(
    client: TestClient, publisher: FakePublisher
) -> None:
    body = orjson.dumps(_cloud_event("ep-2", "0c6a5a1e-0000-4000-8000-000000000002"))
    headers: dict[str, Any] = {
        "X-Akeneo-Signature-Primary": b"\xff junk \xfe",
        "X-Akeneo-Signature-Secondary": sign_event_platform(EP_SECONDARY, body),
    }
    assert client.post(EVENT_PLATFORM_PATH, content=body, headers=headers).status_code == 200
    assert len(publisher.records) == 1


# ------------------------------------------------------------------------- signed
def test_an_event_too_large_for_a_record_downstream_is_413_with_the_reason(
    publisher: FakePublisher,
) -> None:
    # The body cap (1 MiB) is above the broker's record limit: the event is checked itself.
    app = create_app(settings(max_body_bytes=2_000_000), publisher)
    client = TestClient(app, raise_server_exceptions=False)
    event = _legacy_event("0c6a5a1e-0000-4000-8000-000000000003")
    event["data"]["resource"]["values"] = {  # type: ignore[index]
        "description": [{"locale": None, "scope": None, "data": "x" * 1_010_000}]
    }
    body = orjson.dumps({"events": [event]})
    resp = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert resp.status_code == 413
    assert "event 0 is" in resp.json()["error"]
    assert publisher.records == []


def test_a_body_nested_300_deep_is_400_not_500(
    client: TestClient, publisher: FakePublisher
) -> None:
    # orjson reads it, but writing the event back raised TypeError (answered 500).
    inner = "[" * 300 + "1" + "]" * 300
    event = orjson.dumps(_legacy_event("0c6a5a1e-0000-4000-8000-000000000004")).decode()
    event = event.replace('"values":{}', '"values":{"deep":' + inner + "}")
    body = ('{"events": [' + event + "]}").encode()
    resp = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert resp.status_code == 400
    assert "nested deeper than 64" in resp.json()["error"]
    assert publisher.records == []


def test_an_events_api_author_that_is_an_object_is_accepted(
    client: TestClient, publisher: FakePublisher
) -> None:
    event = _legacy_event("0c6a5a1e-0000-4000-8000-000000000005")
    event["author"] = {"name": "julia"}
    body = orjson.dumps({"events": [event]})
    resp = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert resp.status_code == 200
    assert len(publisher.records) == 1


def test_an_unexpected_error_is_counted(publisher: FakePublisher) -> None:
    publisher.fail = RuntimeError("a bug")
    client = TestClient(create_app(settings(), publisher), raise_server_exceptions=False)
    body = orjson.dumps({"events": [_legacy_event("0c6a5a1e-0000-4000-8000-000000000006")]})
    resp = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal error"}
    assert (
        _metrics(client).value(
            "pimhub_ingest_webhook_requests", endpoint="events-api", outcome="internal_error"
        )
        == 1
    )


# ------------------------------------------------------------------------- protocol
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [EVENTS_API_PATH, EVENT_PLATFORM_PATH])
def test_other_methods_on_the_webhook_paths_are_405(
    client: TestClient, method: str, path: str
) -> None:
    resp = client.request(method, path)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"


def test_event_type_labels_are_bounded(client: TestClient, publisher: FakePublisher) -> None:
    events = [
        {**_legacy_event("0c6a5a1e-0000-4000-8000-000000000007", f"e-{i}"), "action": f"x.{i}"}
        for i in range(10)
    ]
    body = orjson.dumps({"events": events})
    assert (
        client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body)).status_code == 200
    )
    registry = _metrics(client).registry
    labels = {
        s.labels["event_type"]
        for m in registry.collect()
        if m.name == "pimhub_ingest_events"
        for s in m.samples
    }
    assert labels == {"other"}


def test_a_broker_failure_answer_carries_no_internal_error_text(
    client: TestClient, publisher: FakePublisher
) -> None:
    publisher.fail = PublishFailed("KafkaError{code=_MSG_TIMED_OUT,val=-192} at broker 10.0.0.7")
    body = orjson.dumps({"events": [_legacy_event("0c6a5a1e-0000-4000-8000-000000000008")]})
    resp = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert resp.status_code == 503
    assert "Kafka" not in resp.text and "10.0.0.7" not in resp.text
    assert resp.headers["retry-after"] == "1"


def test_a_body_trickled_slower_than_the_timeout_is_408(publisher: FakePublisher) -> None:
    app = create_app(settings(body_timeout_s=0.2), publisher)
    chunks = [b'{"events": ', b"[]}"]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if len(chunks) == 1:
            await asyncio.sleep(1.0)  # the client stalls mid-body
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": EVENTS_API_PATH,
        "raw_path": EVENTS_API_PATH.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8090),
        "state": {},
    }
    started = time.monotonic()
    asyncio.run(app(scope, receive, send))
    assert time.monotonic() - started < 0.9
    assert sent[0]["status"] == 408


# ------------------------------------------------------------------------- broker faults
class _FakeProducer:
    """An AsyncProducer stand-in: acknowledges every record, or fails fatally."""

    def __init__(self, fatal: bool) -> None:
        self.fatal = fatal
        self.producer: list[bytes] = []  # len() is the queue length
        self.started = self.closed = False
        self.sent: list[bytes | None] = []

    async def start(self) -> None:
        self.started = True

    async def close(self, timeout: float = 10.0) -> None:
        self.closed = True

    def send_nowait(self, topic: str, value: bytes | None, key: Any, headers: Any) -> Any:
        if self.fatal:
            # What librdkafka raises once an idempotent producer hit UNKNOWN_PRODUCER_ID.
            raise KafkaException(KafkaError(KafkaError._FATAL, "unknown producer id", fatal=True))
        self.sent.append(value)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


@pytest.fixture
def own_health(monkeypatch: pytest.MonkeyPatch) -> Health:
    # The process-wide readiness must not keep this test's conditions.
    fresh = Health()
    monkeypatch.setattr(health, "HEALTH", fresh)
    return fresh


def test_a_fatal_producer_error_is_503_then_the_producer_is_rebuilt(own_health: Health) -> None:
    broken, fresh = _FakeProducer(fatal=True), _FakeProducer(fatal=False)
    built: list[_FakeProducer] = []

    def rebuild() -> Any:
        built.append(fresh)
        return fresh

    publisher = KafkaPublisher(broken, rebuild=rebuild)  # type: ignore[arg-type]
    client = TestClient(create_app(settings(), publisher), raise_server_exceptions=False)
    body = orjson.dumps({"events": [_legacy_event("0c6a5a1e-0000-4000-8000-000000000009")]})
    first = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert first.status_code == 503  # not stored: Akeneo retries
    # The rebuild runs on the app's loop; the next request is served by the new producer.
    deadline = time.monotonic() + 10
    while (not built or not publisher.healthy) and time.monotonic() < deadline:
        time.sleep(0.05)
        client.get("/pump")  # any request lets the app's loop run the rebuild
    assert built == [fresh] and fresh.started and broken.closed
    # The metrics port's /readyz condition is back (the public port serves no health).
    assert own_health.readiness()["checks"]["producer"]["ok"] is True
    again = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    assert again.status_code == 200
    assert len(fresh.sent) == 1


def test_health_is_503_while_the_producer_cannot_be_rebuilt(own_health: Health) -> None:
    def rebuild() -> Any:
        raise RuntimeError("broker unreachable")

    publisher = KafkaPublisher(_FakeProducer(fatal=True), rebuild=rebuild)  # type: ignore[arg-type]
    client = TestClient(create_app(settings(), publisher), raise_server_exceptions=False)
    body = orjson.dumps({"events": [_legacy_event("0c6a5a1e-0000-4000-8000-000000000010")]})
    assert (
        client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body)).status_code == 503
    )
    # Unready on the metrics port's /readyz while no producer works.
    assert own_health.readiness()["checks"]["producer"]["ok"] is False
    assert (
        client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body)).status_code == 503
    )


class _StalledPublisher(FakePublisher):
    """A broker that does not answer (down or frozen)."""

    async def publish(self, records: Any) -> None:
        await asyncio.sleep(30)


def test_the_events_api_is_answered_within_its_budget_and_the_loss_is_traced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(create_app(settings(), _StalledPublisher()), raise_server_exceptions=False)
    body = orjson.dumps({"events": [_legacy_event("0c6a5a1e-0000-4000-8000-000000000012", "e-12")]})
    started = time.monotonic()
    with caplog.at_level("ERROR", logger="pim_hub.services.ingest.web"):
        resp = client.post(EVENTS_API_PATH, content=body, headers=signed_legacy(body))
    # The app answers when its budget (0.45 s: Akeneo gives up after 0.5 s) runs out, not
    # when the stalled broker would answer (30 s); the margin is for a loaded test machine's
    # scheduling, not for the app.
    assert time.monotonic() - started < 3.0
    assert resp.status_code == 503
    lost = [r for r in caplog.records if r.getMessage() == "webhook events not stored"]
    assert lost and lost[0].event_ids == ["e-12"]  # type: ignore[attr-defined]
    metrics = _metrics(client)
    assert (
        metrics.value("pimhub_ingest_webhook_events", endpoint="events-api", outcome="not_stored")
        == 1
    )


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/livez"])
def test_the_public_port_serves_no_health_endpoints(path: str) -> None:
    """Health and readiness live on the metrics port only; the webhook port answers 404."""
    client = TestClient(create_app(settings(), FakePublisher()), raise_server_exceptions=False)
    resp = client.get(path)
    assert resp.status_code == 404 and resp.json() == {"error": "not found"}


class _SilentProducer(_FakeProducer):
    """A producer stuck without a fatal error: its records are never acknowledged (what
    librdkafka does after the broker restarted empty: UNKNOWN_PRODUCER_ID, epoch bumps)."""

    def send_nowait(self, topic: str, value: bytes | None, key: Any, headers: Any) -> Any:
        self.sent.append(value)
        return asyncio.get_running_loop().create_future()


def test_a_stuck_producer_is_replaced_without_a_restart(own_health: Health) -> None:
    stuck: Any = _SilentProducer(fatal=False)
    fresh: Any = _FakeProducer(fatal=False)
    publisher = KafkaPublisher(stuck, timeout_s=0.05, stall_s=0.3, rebuild=lambda: fresh)
    record = [RawRecord("product:1", b"{}", [])]

    async def go() -> list[str]:
        outcomes = []
        for _ in range(40):
            try:
                await publisher.publish(record)
                outcomes.append("stored")
            except PublishFailed:
                outcomes.append("failed")
            await asyncio.sleep(0.02)
        return outcomes

    outcomes = asyncio.run(go())
    # Failures until the stall was seen (several writes over stall_s), then stored again.
    assert outcomes[0] == "failed" and outcomes[-1] == "stored", outcomes
    assert stuck.closed and fresh.started
    assert publisher.producer is fresh
    assert own_health.readiness()["checks"]["producer"]["ok"] is True


def test_a_single_failure_does_not_replace_the_producer(own_health: Health) -> None:
    stuck: Any = _SilentProducer(fatal=False)
    fresh: Any = _FakeProducer(fatal=False)
    built: list[Any] = []

    def rebuild() -> Any:
        built.append(fresh)
        return fresh

    publisher = KafkaPublisher(stuck, timeout_s=0.05, stall_s=60, rebuild=rebuild)

    async def go() -> None:
        for _ in range(5):
            with pytest.raises(PublishFailed):
                await publisher.publish([RawRecord("product:1", b"{}", [])])

    asyncio.run(go())
    assert not built and publisher.producer is stuck  # slow, not yet stalled for stall_s
