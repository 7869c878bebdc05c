"""Logging set-up: structured JSON lines with stable keys, or plain text for people."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

#: Stable keys of hub log records (pass them in `extra`); never payloads or secrets.
STABLE_KEYS = ("event_id", "entity_key", "integration", "job_id", "topic", "partition", "offset")
#: `extra` keys that would carry payloads or secrets: their values are replaced, never written.
REDACTED_KEYS = frozenset(
    {"payload", "body", "state", "values", "config", "password", "secret", "token", "headers"}
)


#: Attributes every LogRecord has: anything else on a record came from `extra`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class TextFormatter(logging.Formatter):
    """One line for people that keeps the structured fields: `message key=value ...`.

    The stable keys come first, in their order, then any other `extra` field by name, so
    `HUB_LOG_FORMAT=text` says as much as the JSON lines (job id, entity key, reason, ...).
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The base line, the extra fields, then the traceback if any."""
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
        if not extras:
            return line
        ordered = [k for k in STABLE_KEYS if k in extras]
        ordered += sorted(k for k in extras if k not in STABLE_KEYS)
        fields = " ".join(f"{k}={_text(extras[k])}" for k in ordered)
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {fields}{sep}{tail}"


def _text(value: object) -> str:
    text = str(value)
    # Quote what would not read back as one token.
    return repr(text) if (not text or any(c.isspace() or c in "\"'=" for c in text)) else text


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
        handler.setFormatter(TextFormatter())
    handler.addFilter(Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries are chatty at INFO; their warnings still show.
    for noisy in ("faust", "mode", "aiokafka", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@contextmanager
def to_current_stderr() -> Iterator[None]:
    """Point the root logger's stream handlers at `sys.stderr` as it is now, then back.

    Rich redirects sys.stderr while a progress bar shows, so that lines print above it; the
    handlers hold the stream of before and would write into the bar's line (and leave their
    text on the report's line). Enter this after the bar has started.
    """
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.setStream(sys.stderr) for h in handlers]
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            if stream is not None:
                handler.setStream(stream)
