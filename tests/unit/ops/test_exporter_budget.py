"""The lag exporter's reading ends in bounded time, however many groups it watches."""

from __future__ import annotations

import time
from typing import Any

from pim_hub.ops.exporter import LagReader, _Probe
from pim_hub.runtime.settings import Settings

TP = ("hub.jobs.normal", 0)


class _Reader(LagReader):
    """LagReader over a made-up cluster: `groups` groups lagging at the given offsets; each
    look-up of a first record's time finds nothing and waits its whole timeout."""

    def __init__(self, offsets: list[int], **kwargs: Any) -> None:
        super().__init__(Settings(kafka_bootstrap="127.0.0.1:9"), **kwargs)
        self.offsets = offsets
        self.lookups: list[int] = []

    def __post_init__(self) -> None:  # no clients: nothing here talks to a broker
        pass

    def groups(self) -> list[str]:
        return [f"hub.dispatch.g{i}.normal" for i in range(len(self.offsets))]

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        return {TP: self.offsets[int(group.split(".")[2][1:])]}

    def _listed_ends(self, positions: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        return {TP: 1_000}

    def _probe(self, positions: Any, ends: Any) -> dict[tuple[str, int], _Probe]:
        return {tp: _Probe() for tp in positions}

    def _timestamp_at(self, topic: str, partition: int, offset: int, timeout_s: float) -> None:
        self.lookups.append(offset)
        time.sleep(timeout_s)


def test_a_reading_of_many_lagging_groups_stays_within_the_budget() -> None:
    reader = _Reader(list(range(100, 400)), probe_timeout_s=0.2, stamp_budget_s=0.5)
    began = time.monotonic()
    lags = reader.read()
    took = time.monotonic() - began
    # Every group's lag in records is read; the ages stop being looked up at the budget.
    assert len(lags) == 300
    assert {lag.messages for lag in lags} == {1_000 - off for off in range(100, 400)}
    assert len(reader.lookups) <= 4
    assert took < 0.5 + 0.2 + 0.5  # the budget, one look-up past it, slack


def test_groups_at_the_same_offset_share_one_lookup() -> None:
    reader = _Reader([500] * 50, probe_timeout_s=0.05, stamp_budget_s=5)
    lags = reader.read()
    assert len(lags) == 50
    assert reader.lookups == [500]
