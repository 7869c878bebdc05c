"""A fixed pure-Python reference workload: the unit that makes CPU figures comparable.

Hosts differ by more than their core count: the same hub run costs about three times the CPU
seconds on a CPU that runs pure Python three times slower. Every `make bench` run measures
this workload first, and the end-to-end benchmark reports CPU seconds per delivered product
both absolute and divided by it, so figures from two hosts (or a noisy and a quiet run) can
be set side by side. The workload is what the hub's own hot paths do most (dict and string
work, small allocations, integer loops); it never changes, or old figures lose their unit.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Rounds of the workload; one round is about 0.3 s of CPU on a recent x86 core.
ROUNDS = 3


def _workload() -> int:
    total = sum(range(3_000_000))
    table: dict[str, int] = {}
    for i in range(200_000):
        key = f"values.name.en_US.ecommerce.{i % 5_000}"
        table[key] = table.get(key, 0) + len(key)
    words = [str(i) for i in range(100_000)]
    joined = ",".join(words)
    return total + sum(table.values()) + len(joined.split(","))


def cpu_seconds(rounds: int = ROUNDS) -> float:
    """CPU seconds of one round of the reference workload (median of `rounds`).

    Process CPU time, not wall time: another process on the same core slows the wall clock,
    not this figure (cache and frequency effects aside).
    """
    times = []
    for _ in range(rounds):
        began = time.process_time()
        _workload()
        times.append(time.process_time() - began)
    return statistics.median(times)


def run() -> dict[str, float]:
    """`make bench` entry: the reference's CPU seconds."""
    return {"reference_cpu_s": round(cpu_seconds(), 4)}


if __name__ == "__main__":
    print(run())


class DuringLoad:
    """The reference measured again and again while a load runs, in its own process.

    The host's speed is not constant: on a shared virtual machine the same workload took
    from 0.15 to 0.27 CPU seconds within minutes, and a figure divided by the reference
    taken once before the load moves with it. Measured every `every_s` seconds during the
    load (a separate process, so the benchmark's own threads are not counted), the median
    is the unit of the CPU the load itself spent. It costs about 1% of a core.
    """

    def __init__(self, every_s: float = 20.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reference", daemon=True)

    def _run(self) -> None:
        code = "from bench.reference import cpu_seconds; print(cpu_seconds(1))"
        while not self._stop.wait(self.every_s):
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT
            )
            if done.returncode == 0:
                self.samples.append(float(done.stdout.strip()))

    def start(self) -> DuringLoad:
        """Begin sampling (the first sample comes after one interval)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """End sampling; a sample under way is waited for."""
        self._stop.set()
        self._thread.join(30)

    def median(self) -> float | None:
        """The median sample, or None when the load was shorter than one interval."""
        return statistics.median(self.samples) if self.samples else None
