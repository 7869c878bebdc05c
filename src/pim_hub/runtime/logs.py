"""Logging set-up: structured JSON lines with stable keys, or plain text for people."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

#: Stable keys of hub log records (pass them in `extra`); never payloads or secrets.
STABLE_KEYS = ("event_id", "entity_key", "integration", "job_id", "topic", "partition", "offset")
#: `extra` keys that would carry payloads or secrets: their values are replaced, never written.
REDACTED_KEYS = frozenset(
    {"payload", "body", "state", "values", "config", "password", "secret", "token", "headers"}
)


class Redact(logging.Filter):
    """Replaces payload and secret fields a caller passed in `extra` by a marker."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in REDACTED_KEYS.intersection(record.__dict__):
            setattr(record, key, "[redacted]")
        return True


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger once, in the process entry point."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries are chatty at INFO; their warnings still show.
    for noisy in ("faust", "mode", "aiokafka", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
