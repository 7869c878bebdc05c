"""REST sync: a resource nested too deep or too large is set aside, the page goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from pim_hub.schemas.serde import Serde
from pim_hub.services.ingest.sync import SyncRunner


class _Producer:
    """Records what is queued; every record is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, Any, Any]] = []

    def send_nowait(self, topic: str, value: bytes | None, key: Any, headers: Any = None) -> Any:
        self.sent.append((topic, value, key, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _category(code: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "parent": None, "labels": {}, **extra}


def test_deep_and_oversized_resources_are_set_aside_and_the_page_goes_on() -> None:
    producer = _Producer()
    runner = SyncRunner(
        None,  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        Serde(),
        None,  # type: ignore[arg-type]
        record_budget=100_000,
    )
    nested: Any = 1
    for _ in range(300):
        nested = [nested]
    items = [
        _category("deep", extra=nested),
        _category("big", labels={"en_US": "x" * 200_000}),
        _category("fine"),
    ]

    async def go() -> tuple[int, int]:
        done, published, invalid = runner._publish("category", items)
        await done
        return published, invalid

    published, invalid = asyncio.run(go())  # nothing raised (orjson writes 254 levels)
    assert (published, invalid) == (1, 2)
    by_topic = [(t, dict(h or [])) for t, _, _, h in producer.sent]
    reasons = [h["error.reason"] for t, h in by_topic if t == "pim.snapshots.invalid"]
    assert reasons == ["too_deep", "too_large"]
    # A sync writes the bulk snapshot topic (the mutator reads live snapshots first).
    assert [t for t, _ in by_topic].count("pim.snapshots.bulk") == 1
    deep_value = producer.sent[0][1]
    assert deep_value is None  # cannot be written back: the headers say why
    good = Serde().decode("Snapshot", producer.sent[2][1])
    assert good["entity_key"] == "category:fine" and orjson.loads(good["payload"])["code"] == "fine"
