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
import time

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
