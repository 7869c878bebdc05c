"""Log lines written while a progress bar shows go above it, never into the report's line."""

from __future__ import annotations

import io
import logging
import sys

import pytest
import rich.console

from pim_hub.cli.ops import _progress


def test_log_handlers_follow_the_bars_redirected_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    # A terminal, so that rich redirects sys.stderr while the bar shows.
    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))
    original = io.StringIO()
    handler = logging.StreamHandler(original)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    with _progress("reading", True) as bar:
        assert bar is not None
        redirected = sys.stderr
        assert redirected is not original
        assert handler.stream is redirected
    assert handler.stream is original


def test_the_sync_bar_goes_to_stderr_and_log_lines_above_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pim_hub.services.ingest.sync import LogProgress, RichProgress, default_progress

    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))
    original = io.StringIO()
    handler = logging.StreamHandler(original)
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    bar = RichProgress()
    assert handler.stream is sys.stderr and handler.stream is not original
    bar.begin("product", 0)
    bar.advance("product", 10)
    bar.end("product")
    bar.close()
    assert handler.stream is original
    assert capsys.readouterr().out == ""  # stdout keeps the report alone
    quiet = default_progress(False)
    assert isinstance(quiet, LogProgress) and quiet.every_s == float("inf")
