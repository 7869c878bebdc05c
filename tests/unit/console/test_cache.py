"""The console's background-refreshed figures: loaded once, served from memory, refreshed
after their age, the last figures kept (with the error) when a refresh fails."""

from __future__ import annotations

import time

import pytest

from pim_hub.console.cache import Refreshing
from pim_hub.devstack.stack import wait_for


def test_figures_are_loaded_once_then_refreshed_in_the_background() -> None:
    calls: list[int] = []

    def load() -> int:
        calls.append(1)
        return len(calls)

    figures = Refreshing(load, max_age_s=0.2)
    assert figures.get()[0] == 1
    assert figures.get()[0] == 1 and len(calls) == 1  # fresh: from memory
    time.sleep(0.3)
    value, age = figures.get()  # stale: answered at once, a refresh starts
    assert value == 1 and age >= 0.2
    wait_for(lambda: figures.get()[0] >= 2, timeout=10, what="the refresh")
    figures.max_age_s = 100.0
    time.sleep(0.5)  # a refresh the polling above started ends
    loaded = len(calls)
    figures.invalidate()
    assert figures.get() == (loaded + 1, 0.0)  # loaded again, at once


def test_a_failed_refresh_keeps_the_last_figures_and_says_why() -> None:
    answers: list[object] = [1, RuntimeError("broker down"), 3]

    def load() -> int:
        # The last answer stays: a refresh started after the test's checks must not fail (its
        # log line would land after the test's output is closed).
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, int)
        return answer

    figures = Refreshing(load, max_age_s=0.05)
    assert figures.get()[0] == 1
    time.sleep(0.1)
    assert figures.get()[0] == 1
    wait_for(lambda: figures.last_error == "broker down", timeout=10, what="the failed refresh")
    assert figures.get()[0] == 1
    wait_for(lambda: figures.get()[0] == 3, timeout=10, what="the next refresh")
    assert figures.last_error is None


def test_the_first_load_fails_loudly() -> None:
    def load() -> int:
        raise RuntimeError("no database")

    with pytest.raises(RuntimeError, match="no database"):
        Refreshing(load, max_age_s=1).get()


def test_only_the_newest_finished_runs_are_kept() -> None:
    from pim_hub.console.actions import Run, Runs
    from pim_hub.console.auth import Identity
    from pim_hub.ops.replay import RunReport
    from pim_hub.runtime.settings import Settings

    runs = Runs()
    runs.KEEP = 3
    who = Identity("ana", "operator")
    settings = Settings(database_url="postgresql://unused")

    def work(run: Run) -> RunReport:
        raise RuntimeError("no broker here")  # the run fails at once; its audit fails too

    started = [runs.start(settings, "replay", who, "t", work, {}) for _ in range(6)]
    wait_for(
        lambda: all("not audited" in (r.error or "") for r in started),
        timeout=30,
        what="the runs, failed and their audit failure said",
    )
    assert all(r.state == "failed" and "no broker here" in (r.error or "") for r in started)
    last = runs.start(settings, "replay", who, "t", work, {})
    kept = [r for r in started if runs.get(r.run_id) is not None]
    # Its end too, so that nothing of it logs after the test.
    wait_for(lambda: "not audited" in (last.error or ""), timeout=30, what="the last run")
    assert len(kept) <= 3 and runs.get(started[-1].run_id) is not None
