"""The receiver's header deadline on a real socket: slow or silent clients are cut off, others
are served meanwhile (slowloris)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from pim_hub.sandbox.akeneo.server import free_port
from pim_hub.services.ingest import server
from pim_hub.services.ingest.events import EVENTS_API
from pim_hub.services.ingest.web import EVENTS_API_PATH, Metrics, create_app
from tests.unit.ingest.test_web import FakePublisher, settings, signed_legacy
from tests.unit.ingest.test_web_hardening import _legacy_event

TIMEOUT_S = 1.0


@contextmanager
def receiver(parser: str, busy_s: float = 0.0) -> Iterator[tuple[int, FakePublisher, Metrics]]:
    """The app served by `hub ingest web`'s uvicorn configuration, in a thread. With `busy_s`,
    other work holds the event loop that long as each request's data arrives, ahead of it."""
    publisher = FakePublisher()
    ingest = settings(header_timeout_s=TIMEOUT_S)
    port = free_port()
    app = create_app(ingest, publisher)
    cfg = server.config(app, "127.0.0.1", port, ingest)
    cfg.http = server.protocol(TIMEOUT_S, parser)
    if busy_s:
        base: Any = cfg.http

        class Busy(base):  # type: ignore[misc]
            def data_received(self, data: bytes) -> None:
                self.loop.call_soon(time.sleep, busy_s)  # queued before the app's task
                super().data_received(data)

        cfg.http = Busy
    cfg.lifespan = "off"
    served = uvicorn.Server(cfg)
    # uvicorn installs signal handlers only in the main thread; a thread must not try.
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not served.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    try:
        yield port, publisher, app.state.metrics
    finally:
        served.should_exit = True
        thread.join(10)


def _closed_after(sock: socket.socket, dribble: list[bytes], every_s: float) -> tuple[float, bytes]:
    """Send the pieces one by one, `every_s` apart, until the server closes; (seconds, answer)."""
    started = time.monotonic()
    answer = b""
    sock.settimeout(every_s)
    for piece in dribble:
        try:
            sock.sendall(piece)
        except OSError:
            break  # reset: closed
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        answer += chunk
        if not chunk:
            break
        # The 408 came; read to the close.
        sock.settimeout(2)
        while chunk:
            chunk = sock.recv(4096)
            answer += chunk
        break
    return time.monotonic() - started, answer


def _post_one(port: int, event_id: str) -> int:
    body = orjson.dumps(
        {"events": [_legacy_event("0c6a5a1e-0000-4000-8000-000000000042", event_id)]}
    )
    resp = httpx.post(
        f"http://127.0.0.1:{port}{EVENTS_API_PATH}",
        content=body,
        headers=signed_legacy(body),
        timeout=5,
    )
    return resp.status_code


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_a_client_dribbling_headers_is_cut_off_while_others_are_served(parser: str) -> None:
    with receiver(parser) as (port, publisher, _):
        served: list[int] = []
        stop = threading.Event()

        def others() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                served.append(_post_one(port, f"e-other-{parser}-{n}"))
                time.sleep(0.1)

        worker = threading.Thread(target=others, daemon=True)
        worker.start()
        try:
            with socket.create_connection(("127.0.0.1", port)) as slow:
                head = [b"POST " + EVENTS_API_PATH.encode() + b" HTTP/1.1\r\n", b"Host: x\r\n"]
                # One header byte every 0.2 s: each read is prompt, the whole head is not.
                dribble = head + [b"X-Slow: " + b"a" * i + b"\r\n" for i in range(60)]
                elapsed, answer = _closed_after(slow, dribble, every_s=0.2)
        finally:
            stop.set()
            worker.join(10)
        assert TIMEOUT_S * 0.8 <= elapsed < TIMEOUT_S + 2.0, elapsed
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"request headers not received in time" in answer
        # The other client was answered all along, and its events were stored.
        assert len(served) >= 3 and set(served) == {200}, served
        assert len(publisher.records) >= 3


def test_a_silent_connection_is_closed_and_a_kept_alive_one_gets_a_new_deadline() -> None:
    with receiver("httptools") as (port, _, _):
        with socket.create_connection(("127.0.0.1", port)) as silent:
            silent.settimeout(TIMEOUT_S + 3)
            started = time.monotonic()
            assert silent.recv(4096) == b""  # closed without a word: nothing was asked
            assert time.monotonic() - started >= TIMEOUT_S * 0.8

        with socket.create_connection(("127.0.0.1", port)) as kept:
            # A quick request, answered; then the next one's head dribbles on the same socket.
            kept.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            kept.settimeout(5)
            first = kept.recv(4096)
            assert first.startswith(b"HTTP/1.1 404 ")
            elapsed, answer = _closed_after(
                kept, [b"GET /x HTTP/1.1\r\n"] + [b"X: 1\r\n"] * 60, every_s=0.2
            )
            assert elapsed < TIMEOUT_S + 2.0 and answer.startswith(b"HTTP/1.1 408 "), answer


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_the_wait_between_reading_a_request_and_its_handler_is_measured(parser: str) -> None:
    # Work queued on the loop ahead of the app (a busy process) delays each handler by 0.3 s.
    with receiver(parser, busy_s=0.3) as (port, _, metrics):
        assert [_post_one(port, f"e-wait-{parser}-{n}") for n in range(3)] == [200] * 3
        registry = metrics.registry
        labels = {"endpoint": EVENTS_API}
        count = registry.get_sample_value("pimhub_ingest_webhook_wait_seconds_count", labels)
        total = registry.get_sample_value("pimhub_ingest_webhook_wait_seconds_sum", labels)
    assert count == 3
    assert total is not None and 3 * 0.29 <= total < 3 * 1.0, total

    with receiver(parser) as (port, _, metrics):
        assert _post_one(port, f"e-prompt-{parser}") == 200
        waited = metrics.registry.get_sample_value(
            "pimhub_ingest_webhook_wait_seconds_sum", {"endpoint": EVENTS_API}
        )
    assert waited is not None and waited < 0.25, waited
