"""A minimal receiver for pim-hub's webhook driver (Python standard library only).

It does the three things every receiver must do (docs/webhook-driver.md):

1. verify the signature: `X-PimHub-Signature` is the hex HMAC-SHA256 of the raw body with
   the integration's `secret`; a request that does not match gets 401 (the hub records the
   job as dead with the reason, it does not retry a 4xx);
2. deduplicate on the job id (the `Idempotency-Key` header, also `job_id` in the body):
   delivery is at-least-once, so the same job can arrive again after a timeout or a restart;
   the ids are kept in SQLite so a restarted receiver still knows them;
3. answer 2xx only once the job is handled (here: written to stdout as one JSON line);
   answer 5xx (or 429) when it could not be handled now: the hub retries later.

Run it:

    python examples/webhook_receiver.py --port 8099 --secret s3cret --db received.sqlite

and register an integration pointing at it:

    hub integrations add my-hook --driver webhook \
        --config '{"url": "http://127.0.0.1:8099/", "secret": "s3cret"}'

Each handled job is printed as {"event": "applied", "job_id", "entity_key", "operation",
"changes"}; a repeat as {"event": "duplicate", "job_id"}; a bad signature as
{"event": "rejected", "reason"}. The first line, {"event": "ready", "port"}, says it listens.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def signature_ok(secret: bytes, body: bytes, signature: str | None) -> bool:
    """Whether signature is the hex HMAC-SHA256 of body (compared in constant time)."""
    if signature is None:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


class SeenJobs:
    """Job ids already handled, in SQLite (":memory:" forgets them on restart)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (job_id TEXT PRIMARY KEY)")
        self._lock = threading.Lock()

    def first_time(self, job_id: str) -> bool:
        """Record job_id; False when it was recorded before (a repeated delivery)."""
        with self._lock, self._db:
            cursor = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (job_id,))
            return cursor.rowcount == 1


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout (what a real receiver would write to its own system)."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def make_handler(secret: bytes | None, seen: SeenJobs) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to a secret and a job-id store."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the hub reuses its connections

        def _answer(self, status: int, message: str = "") -> None:
            data = json.dumps({"status": status, "message": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if secret is not None and not signature_ok(
                secret, body, self.headers.get("X-PimHub-Signature")
            ):
                emit({"event": "rejected", "reason": "bad signature"})
                self._answer(401, "bad signature")
                return
            try:
                job = json.loads(body)
                job_id = job["job_id"]
            except (ValueError, KeyError, TypeError):
                emit({"event": "rejected", "reason": "not a pim-hub job"})
                self._answer(400, "not a pim-hub job")
                return
            if not seen.first_time(job_id):
                emit({"event": "duplicate", "job_id": job_id})
                self._answer(200, "duplicate")
                return
            emit(
                {
                    "event": "applied",
                    "job_id": job_id,
                    "mode": job["mode"],
                    "entity_key": job["entity_key"],
                    "operation": job["operation"],
                    "changes": job["changes"],
                }
            )
            self._answer(200, "applied")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: stdout carries only the JSON lines above."""

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--secret", help="the integration's secret; unset: no check")
    parser.add_argument("--db", default=":memory:", help="SQLite file of handled job ids")
    args = parser.parse_args(argv)
    secret = args.secret.encode() if args.secret else None
    server = ThreadingHTTPServer((args.host, args.port), make_handler(secret, SeenJobs(args.db)))
    emit({"event": "ready", "port": server.server_address[1]})
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
