"""The benchmarks' CPU unit: the reference workload and CPU per product in its units."""

from __future__ import annotations

import statistics
import time

import pytest

from bench import reference
from bench.bench_e2e import cpu_per_product


def test_the_reference_workload_takes_measurable_cpu_and_gives_a_fixed_result() -> None:
    assert reference._workload() == reference._workload()
    assert reference.cpu_seconds(rounds=1) > 0.005


def test_cpu_per_product_counts_the_hub_and_the_broker_not_the_simulators() -> None:
    cpu = {
        "mutator": 30.0,
        "dispatcher-normal": 20.0,
        "broker": 50.0,
        "akeneo-sandbox": 500.0,
        "magento-sandbox": 700.0,
        "postgres": 9.0,
        "machine_busy": 2000.0,
    }
    figures = cpu_per_product(cpu, products=10_000, reference_s=0.5)
    assert figures["hub_cpu_ms_per_product"] == pytest.approx(10.0)  # (30+20+50) s / 10,000
    assert figures["broker_cpu_ms_per_product"] == pytest.approx(5.0)
    assert figures["hub_cpu_per_product_in_references"] == pytest.approx(0.02)
    assert figures["broker_cpu_per_product_in_references"] == pytest.approx(0.01)


def test_a_host_twice_as_slow_gives_the_same_figure_in_references() -> None:
    fast = cpu_per_product({"mutator": 10.0, "broker": 10.0}, 1_000, reference_s=0.2)
    slow = cpu_per_product({"mutator": 20.0, "broker": 20.0}, 1_000, reference_s=0.4)
    assert fast["hub_cpu_ms_per_product"] * 2 == slow["hub_cpu_ms_per_product"]
    assert fast["hub_cpu_per_product_in_references"] == slow["hub_cpu_per_product_in_references"]


def test_the_reference_is_sampled_in_its_own_process_during_a_load() -> None:
    during = reference.DuringLoad(every_s=0.05).start()
    deadline = time.monotonic() + 30
    while len(during.samples) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    during.stop()
    assert len(during.samples) >= 2
    assert all(0 < s < 30 for s in during.samples)
    assert during.median() == statistics.median(during.samples)
    assert reference.DuringLoad().median() is None  # no sample: no unit, not a zero
