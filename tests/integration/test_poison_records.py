"""Poison records on the real broker: each is set aside with its reason and the stage goes on."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.kafka import make_producer, produce_sync
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.limits import MAX_VALUE_CHARS
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from tests.integration.test_mutator import Topic

pytestmark = pytest.mark.integration

V1 = "2024-05-01T10:00:00+00:00"


def _uid(unique: str, tag: str) -> str:
    return f"00000000-0000-4000-{tag:0>4}-{unique:0>12}"[:36]


def _payload(uid: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": uid, "identifier": f"SKU-{uid[-8:]}", "values": values, "updated": V1}


def _publish(settings: Settings, key: str, payload_text: str | None) -> None:
    record = snapshot_record("product", key, None, V1, "external")
    record["payload"] = payload_text
    producer = make_producer(settings)
    produce_sync(producer, topics.SNAPSHOTS, Serde().encode("Snapshot", record), key=key)


def _set_aside_counts(pipeline: Supervisor) -> dict[str, float] | None:
    """The mutator's set-aside counters by reason; None while its /metrics does not answer."""
    port = pipeline.metrics_ports["mutator"]
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.TransportError:
        return None
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("pimhub_records_set_aside_total{") and 'stage="mutator"' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def test_poison_snapshots_are_set_aside_and_the_mutator_goes_on(
    pipeline: Supervisor, hub_settings: Settings, unique: str
) -> None:
    invalid = Topic(hub_settings, topics.SNAPSHOTS_INVALID)
    mutations = Topic(hub_settings, topics.MUTATIONS)
    try:

        def reachable() -> list[dict[str, float]]:
            counts = _set_aside_counts(pipeline)
            return [] if counts is None else [counts]

        before = wait_for(
            reachable, timeout=180, what="the mutator's /metrics", supervisor=pipeline
        )[0]
        # Three values under the per-value limit: the snapshot (about 750 KB) fits the broker,
        # its create mutation (every value twice: change and state) does not.
        large = _uid(unique, "a001")
        chunk = "z" * (MAX_VALUE_CHARS - 10_000)
        values = {f"text_{i}": [{"locale": None, "scope": None, "data": chunk}] for i in range(3)}
        _publish(hub_settings, f"product:{large}", orjson.dumps(_payload(large, values)).decode())
        # Nested 300 deep: orjson reads it, but cannot write it back.
        deep = _uid(unique, "a002")
        text = orjson.dumps(_payload(deep, {})).decode()
        text = text[:-1] + ',"deep":' + "[" * 300 + "1" + "]" * 300 + "}"
        _publish(hub_settings, f"product:{deep}", text)
        # A good snapshot behind them on the same partitions' consumer: it must come through.
        good = _uid(unique, "a003")
        name = {"name": [{"locale": None, "scope": None, "data": "fine"}]}
        _publish(hub_settings, f"product:{good}", orjson.dumps(_payload(good, name)).decode())

        assert len(mutations.poll_for(f"product:{good}", 1, 120, pipeline)) == 1
        reasons = {}
        for uid in (large, deep):
            msgs = invalid.poll_for(f"product:{uid}", 1, 60, pipeline)
            assert len(msgs) == 1, uid
            headers = dict(msgs[0].headers() or [])
            reasons[uid] = headers["error.reason"].decode()
            assert headers["error.message"]
        assert reasons == {large: "too_large", deep: "too_deep"}
        pipeline.check()  # the mutator is still alive: no exit, no restart
        time.sleep(0.5)
        assert mutations.poll_for(f"product:{large}", 1, 0.5, pipeline) == []

        def counted() -> bool:
            now = _set_aside_counts(pipeline) or {}
            return all(
                now.get(reason, 0.0) >= before.get(reason, 0.0) + 1
                for reason in ("too_large", "too_deep")
            )

        wait_for(
            counted,
            timeout=30,
            what="the set-aside counters",
            supervisor=pipeline,
        )
    finally:
        invalid.close()
        mutations.close()
