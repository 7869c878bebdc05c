"""Process tuning: the start-up heap is frozen and full collections are spaced as asked;
background services lower their CPU priority as the settings say."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest
from pydantic import ValidationError

from pim_hub.runtime.settings import Settings
from pim_hub.runtime.tuning import DEFAULT_FULL_EVERY, DISPATCHER_FULL_GC_EVERY, quiet_gc


def test_quiet_gc_freezes_the_heap_and_sets_only_the_full_collection_threshold() -> None:
    before = gc.get_threshold()
    try:
        quiet_gc(full_every=DISPATCHER_FULL_GC_EVERY)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], DISPATCHER_FULL_GC_EVERY)
        quiet_gc()
        assert gc.get_threshold() == (before[0], before[1], DEFAULT_FULL_EVERY)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _niceness_after(code: str) -> tuple[int, int]:
    """(niceness before, after) `code` in a child process: the test's own stays as it is."""
    script = (
        "import os\nfrom pim_hub.runtime.tuning import give_way\n"
        f"before = os.nice(0)\n{code}\nprint(before, os.nice(0))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    before, after = out.split()
    return int(before), int(after)


def test_give_way_raises_the_niceness_by_the_setting_and_zero_leaves_it() -> None:
    before, after = _niceness_after("assert give_way(5, 'test') == min(19, before + 5)")
    assert after == min(19, before + 5)
    before, after = _niceness_after("give_way(0, 'test')")
    assert after == before


def test_background_nice_defaults_to_ten_and_refuses_what_the_kernel_would_not_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HUB_BACKGROUND_NICE", raising=False)
    assert Settings().background_nice == 10
    monkeypatch.setenv("HUB_BACKGROUND_NICE", "20")
    with pytest.raises(ValidationError, match="background_nice"):
        Settings()
    monkeypatch.setenv("HUB_BACKGROUND_NICE", "-5")  # raising priority needs privileges
    with pytest.raises(ValidationError, match="background_nice"):
        Settings()
