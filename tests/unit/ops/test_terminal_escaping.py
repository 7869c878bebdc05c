"""CLI output escapes control characters from outside (keys, errors): no raw CR, LF or ESC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.cli.output import Output, emit
from pim_hub.ops import trace as trace_ops
from pim_hub.ops.trace import Trace, TraceEvent
from pim_hub.schemas.limits import escape_controls

HOSTILE = "product:abc\r\n\x1b[2K\x1b[1Aforged line\x00"


def test_escape_controls_shows_every_control_character() -> None:
    shown = escape_controls(HOSTILE)
    assert shown == "product:abc\\r\\n\\x1b[2K\\x1b[1Aforged line\\x00"
    assert escape_controls("plain text é") == "plain text é"


def test_hub_trace_prints_a_hostile_key_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events = [TraceEvent(at, "status", "s", 0, 1, f"dead {HOSTILE} (attempt 1): http_400")]

    def collect(*_: Any) -> Trace:
        return Trace(HOSTILE, [HOSTILE], events)

    monkeypatch.setattr(trace_ops, "collect", collect)
    monkeypatch.setenv("HUB_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    result = CliRunner().invoke(app, ["trace", "product:abc"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "\\x1b[2K" in result.stdout
    # One line per event: the key's LF did not start a line of its own.
    assert not any(
        line.startswith("\x1b") or line == "forged line" for line in result.stdout.splitlines()
    )


def test_table_rows_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    emit([{"k": HOSTILE}], Output.table, lambda row: f"key {row['k']}")
    out = capsys.readouterr().out
    assert out == "key product:abc\\r\\n\\x1b[2K\\x1b[1Aforged line\\x00\n"
