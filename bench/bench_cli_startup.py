"""Start-up time of the `hub` command line against a bare `python -c pass`, in the same run.

Every `hub` command imports only what it runs (`pim_hub.cli.lazy`); this measures what a
person waits for before anything happens: `hub --help`, a command's `--help`, `hub version`.
Runs alternate with the baseline so both see the same machine load; medians are compared.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from typing import Any

COMMANDS: dict[str, list[str]] = {
    "help": ["--help"],
    "version": ["version"],
    "trace_help": ["trace", "--help"],
    "deliveries_help": ["deliveries", "--help"],
}


def _seconds(argv: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(rounds: int = 11) -> dict[str, Any]:
    """Median seconds (wall clock and CPU) of each command and of the baseline, and ratios.

    On a loaded machine the wall clock includes waiting for a core; the CPU seconds do not.
    """
    baseline: list[tuple[float, float]] = []
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    hub = [sys.executable, "-m", "pim_hub"]
    for _ in range(rounds):
        baseline.append(_seconds([sys.executable, "-c", "pass"]))
        for name, args in COMMANDS.items():
            timings[name].append(_seconds([*hub, *args]))
    base = statistics.median(w for w, _ in baseline)
    base_cpu = statistics.median(c for _, c in baseline)
    result: dict[str, Any] = {
        "python_c_pass_s": round(base, 4),
        "python_c_pass_cpu_s": round(base_cpu, 4),
    }
    for name, values in timings.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        result[f"hub_{name}_s"] = round(wall, 4)
        result[f"hub_{name}_ratio"] = round(wall / base, 1)
        result[f"hub_{name}_cpu_s"] = round(cpu, 4)
    result["hub_help_under_0_5_s"] = result["hub_help_s"] < 0.5
    return result


if __name__ == "__main__":
    print(run())
