"""The text log format keeps the structured fields; JSON stays the default shape."""

from __future__ import annotations

import json
import logging

import pytest

from pim_hub.runtime import logs


@pytest.fixture
def restore_root() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "pim_hub.test", logging.WARNING, __file__, 1, "job retrying", None, None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_text_lines_keep_the_stable_keys_first_then_the_rest() -> None:
    line = logs.TextFormatter().format(
        _record(reason="webhook answered 503", job_id="j-1", entity_key="product:u", attempt=2)
    )
    assert line.endswith(
        "pim_hub.test: job retrying entity_key=product:u job_id=j-1 attempt=2 "
        "reason='webhook answered 503'"
    )


def test_text_lines_without_extras_are_unchanged() -> None:
    assert logs.TextFormatter().format(_record()).endswith("pim_hub.test: job retrying")


def test_text_lines_keep_the_traceback_below_the_fields() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record(job_id="j-2")
        record.exc_info = sys.exc_info()
    first, *rest = logs.TextFormatter().format(record).splitlines()
    assert first.endswith("job_id=j-2")
    assert rest[-1] == "ValueError: boom"


def test_configure_text_and_json_redact_payloads(
    restore_root: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    log = logging.getLogger("pim_hub.test.configure")
    logs.configure("INFO", "text")
    log.info("service ready", extra={"service": "mutator", "payload": "{secret}"})
    logs.configure("INFO", "json")
    log.info("service ready", extra={"service": "mutator", "payload": "{secret}"})
    text_line, json_line = capsys.readouterr().err.splitlines()
    assert "service=mutator" in text_line and "payload=[redacted]" in text_line
    doc = json.loads(json_line)
    assert doc["service"] == "mutator" and doc["payload"] == "[redacted]"
