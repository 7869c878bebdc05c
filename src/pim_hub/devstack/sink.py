"""A local HTTP sink that records what it receives (webhook target for the demo and tests)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request the sink got."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class HttpSink:
    """Records POSTs; answers with scripted statuses first (to inject failures), then 200."""

    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL of the running sink."""
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HttpSink:
        """Serve on a free loopback port in a daemon thread."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive (every answer has a Content-Length): a client's pool reuses its
            # connections instead of opening one per request.
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with sink.lock:
                    status, headers = sink.script.pop(0) if sink.script else (200, {})
                    if status < 300:
                        try:
                            body: Any = json.loads(raw)
                        except ValueError:
                            body = raw.decode(errors="replace")
                        sink.requests.append(Received(self.path, dict(self.headers), body))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 drops connections opened at once

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def bodies(self, entity_key: str | None = None) -> list[Any]:
        """Received JSON bodies, optionally of one entity."""
        with self.lock:
            return [
                r.body
                for r in self.requests
                if entity_key is None
                or (isinstance(r.body, dict) and r.body.get("entity_key") == entity_key)
            ]
