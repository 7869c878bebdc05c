"""`hub produce snapshot` refuses what the mutator would set aside, with exit code 2 and a reason."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app


def _run(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    # A broker address nothing listens on: the refusal must come before any connection.
    monkeypatch.setenv("HUB_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    path = tmp_path / "entity.json"
    path.write_text(text)
    result = CliRunner().invoke(app, ["produce", "snapshot", str(path)])
    return result.exit_code, result.stderr


def test_a_nul_in_the_product_uuid_is_exit_2_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = {"uuid": "0c6a5a1e-\x00-4000", "values": {}}
    code, err = _run(tmp_path, orjson.dumps(payload).decode(), monkeypatch)
    assert code == 2
    assert "contains a NUL character" in err
    assert "\x00" not in err  # shown escaped, never raw


def test_an_escape_sequence_in_a_code_is_not_written_raw_to_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = {"code": "shoes\x1b[2J\x1b[31mOK", "parent": None}
    monkeypatch.setenv("HUB_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    path = tmp_path / "category.json"
    path.write_text(orjson.dumps(payload).decode())
    result = CliRunner().invoke(
        app, ["produce", "snapshot", str(path), "--entity-type", "category"]
    )
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr
    assert "\\x1b" in result.stderr


def test_a_payload_nested_300_deep_is_exit_2_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = '{"uuid": "0c6a5a1e-0000-4000-8000-000000000001", "deep": ' + "[" * 300 + "]" * 300 + "}"
    code, err = _run(tmp_path, text, monkeypatch)
    assert code == 2
    assert "nested deeper than 64" in err


@pytest.mark.parametrize(
    ("updated", "reason"),
    [("not-a-date", "not an ISO 8601"), ("9999-12-31T00:00:00+00:00", "ahead of the clock")],
)
def test_a_version_that_is_no_date_or_far_ahead_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, updated: str, reason: str
) -> None:
    payload = {"uuid": "0c6a5a1e-0000-4000-8000-000000000001", "updated": updated}
    code, err = _run(tmp_path, orjson.dumps(payload).decode(), monkeypatch)
    assert code == 2
    assert reason in err
