"""The benchmark's webhook sender against the receiver as `hub ingest web` serves it: every
webhook answered, each request's steps timed, a dropped connection tried once more."""

from __future__ import annotations

import socket
import threading

import orjson

from bench.bench_e2e import _stream_sync
from pim_hub.services.ingest.web import EVENTS_API_PATH
from tests.unit.ingest.test_header_timeout import receiver
from tests.unit.ingest.test_web import signed_legacy
from tests.unit.ingest.test_web_hardening import _legacy_event


def _hooks(count: int) -> list[dict[str, object]]:
    hooks: list[dict[str, object]] = []
    for n in range(count):
        uuid = f"0c6a5a1e-0000-4000-8000-{n:012d}"
        body = orjson.dumps({"events": [_legacy_event(uuid, f"e-sender-{n}")]})
        hooks.append(
            {"key": f"product:{uuid}", "body": body.decode(), "headers": signed_legacy(body)}
        )
    return hooks


def test_every_webhook_is_answered_and_its_steps_timed() -> None:
    hooks = _hooks(20)
    with receiver("httptools") as (port, publisher, _):
        streamed = _stream_sync(f"http://127.0.0.1:{port}{EVENTS_API_PATH}", hooks, 100.0)
    assert streamed.statuses == ["200"] * 20
    assert len(publisher.records) == 20
    assert set(streamed.sent) == {h["key"] for h in hooks}
    assert len(streamed.answers) == 20 and all(0 < a < 5 for a in streamed.answers)
    assert streamed.loop_lag  # the sender's own loop was watched while it sent
    for key, sent, steps, answered, status in streamed.timeline:
        assert status == "200" and sent == streamed.sent[key]
        assert sent <= steps["head_sent"] <= steps["answer_head"] <= answered
    # Connections are opened as needed and kept: fewer than one a request.
    opened = [step for _key, _sent, step, _at, _status in streamed.timeline if "connect" in step]
    assert 1 <= len(opened) < 20
    assert all(s["connect"] <= s["connected"] <= s["head_sent"] for s in opened)


def test_a_dropped_connection_is_tried_once_more_and_named() -> None:
    # A server that reads each request and closes without an answer.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.recv(65536)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        streamed = _stream_sync(f"http://127.0.0.1:{port}/", _hooks(2), 50.0)
    finally:
        server.close()
    assert len(streamed.statuses) == 4  # each webhook twice
    assert all(not s.isdigit() for s in streamed.statuses), streamed.statuses
    assert streamed.answers == []
    assert len(accepted) >= 4
