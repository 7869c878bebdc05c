"""`hub run`'s supervision without a broker: restarts with a growing pause, stops what is
no longer wanted, stops everything at the end."""

from __future__ import annotations

import sys
import time

import pytest

from pim_hub.ops.runall import RunAll
from pim_hub.runtime.settings import Settings

EXITS_AT_ONCE = "import sys; sys.exit(3)"
RUNS = "import time; time.sleep(60)"


def _supervisor() -> RunAll:
    return RunAll(Settings(), {}, command=[sys.executable, "-c"], stop_timeout_s=10)


def _wait_exit(sup: RunAll, name: str) -> None:
    proc = sup.children[name].proc
    assert proc is not None
    proc.wait(timeout=30)


def test_a_child_that_dies_at_once_is_restarted_after_a_growing_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = _supervisor()
    wanted = {"crashy": [EXITS_AT_ONCE]}
    sup.reconcile(wanted)
    first = sup.children["crashy"].proc
    _wait_exit(sup, "crashy")
    sup.reconcile(wanted)  # noticed: a pause of 2 s before the next start
    child = sup.children["crashy"]
    assert child.restarts == 1 and child.proc is first
    assert 1.0 < child.next_start - time.monotonic() <= 2.0
    assert any("starting it again" in r.message for r in caplog.records)
    child.next_start = time.monotonic()  # the pause is over
    sup.reconcile(wanted)
    assert child.proc is not first
    _wait_exit(sup, "crashy")
    sup.reconcile(wanted)
    assert child.restarts == 2 and child.next_start - time.monotonic() > 3.0


def test_unwanted_children_are_stopped_and_everything_stops_at_the_end() -> None:
    sup = _supervisor()
    sup.reconcile({"a": [RUNS], "b": [RUNS]})
    procs = {name: c.proc for name, c in sup.children.items()}
    assert all(p is not None and p.poll() is None for p in procs.values())
    sup.reconcile({"a": [RUNS]})
    assert set(sup.children) == {"a"}
    assert procs["b"] is not None and procs["b"].poll() is not None
    sup.stop()
    sup.run()  # stopped before its first cycle: it only stops the children
    assert procs["a"] is not None and procs["a"].poll() is not None
