"""The load-plus-live case's per-hop latencies, the hub's own part apart."""

from __future__ import annotations

from bench.bench_e2e import _hop_quantiles
from pim_hub.schemas import topics


def test_each_hop_is_timed_from_the_send_and_the_hubs_part_from_the_raw_event() -> None:
    keys = [f"product:{n}" for n in range(100)]
    sent = {k: 100.0 for k in keys}
    # The first hop waited 5 s for one entity in a hundred (a sender short of CPU, say).
    raw = {k: 100.1 + (5.0 if n == 99 else 0.0) for n, k in enumerate(keys)}
    delivered = {k: raw[k] + 1.0 + n / 100 for n, k in enumerate(keys)}
    out = _hop_quantiles({topics.RAW_EVENTS: raw}, sent, delivered)
    assert out[topics.RAW_EVENTS] == "p50 100, p99 100 (100)"
    assert out["delivered"] == "p50 1595, p99 2080 (100)"
    # The hub's own part: 1 s plus n/100, the sender's wait left out.
    assert out["raw event -> delivered"] == "p50 1495, p99 1980 (100)"


def test_entities_the_raw_topic_did_not_show_are_left_out_of_the_hubs_part() -> None:
    sent = {"a": 0.0, "b": 0.0}
    out = _hop_quantiles({topics.RAW_EVENTS: {"a": 0.5}}, sent, {"a": 1.0, "b": 3.0})
    assert out["raw event -> delivered"] == "p50 500, p99 500 (1)"
    assert out["delivered"].endswith("(2)")
