"""The enricher on the real broker and PostgreSQL: poison raw events are set aside, the batch goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.akeneo.webhooks import cloud_event, legacy_event
from pim_hub.schemas import topics
from pim_hub.services.ingest.akeneo import AkeneoClient
from pim_hub.services.ingest.enricher import Enricher
from pim_hub.services.ingest.events import EVENT_PLATFORM, EVENTS_API, H_SOURCE
from pim_hub.services.ingest.settings import IngestSettings
from tests.integration.test_ingest_enricher import CREDS, akeneo  # noqa: F401 - a fixture
from tests.integration.test_ingest_support import new_topic, read_all, snapshots
from tests.integration.test_mutator import Topic

pytestmark = pytest.mark.integration


def test_poison_raw_events_are_set_aside_and_good_ones_of_the_batch_go_through(
    hub_settings: Settings,
    akeneo: Any,  # noqa: F811 - the fixture imported above
    unique: str,
) -> None:
    url, cat, _ = akeneo
    raw, out = new_topic(hub_settings, "raw", partitions=1), new_topic(hub_settings, "snap")
    good = legacy_event(cat.update_product(cat.product_uuid(30), enabled=False))
    good["event_id"] = f"good-{unique}"
    deep = legacy_event(cat.update_product(cat.product_uuid(31), enabled=False))
    deep["event_id"] = f"deep-{unique}"
    nul = cloud_event(
        cat.update_product(cat.product_uuid(32), enabled=True),
        subscription_id="s",
        event_id=f"nul-\x00-{unique}",
    )
    author = legacy_event(cat.update_product(cat.product_uuid(33), enabled=True))
    author["event_id"] = f"author-{unique}"
    author["author"] = {"name": "not a string"}
    producer = make_producer(hub_settings)
    keys = {name: f"poison-{name}-{unique}".encode() for name in ("deep", "nul", "header")}

    def deep_json(value: Any) -> bytes:
        # orjson writes 254 levels at most: the 300-deep list is spliced in as text.
        text = orjson.dumps({**value, "data": {**value["data"], "resource": {"x": 0}}}).decode()
        resource = orjson.dumps({**value["data"]["resource"], "values": {}}).decode()
        deep_values = '{"deep": ' + "[" * 300 + "1" + "]" * 300 + "}"
        resource = resource.replace('"values":{}', '"values":' + deep_values)
        return text.replace('{"x":0}', resource).encode()

    producer.produce(raw, deep_json(deep), key=keys["deep"], headers=[(H_SOURCE, EVENTS_API)])
    producer.produce(raw, orjson.dumps(nul), key=keys["nul"], headers=[(H_SOURCE, EVENT_PLATFORM)])
    producer.produce(
        raw, orjson.dumps(good), key=keys["header"], headers=[(H_SOURCE, b"\xff\xfe-not-utf8")]
    )
    producer.produce(raw, orjson.dumps(author), headers=[(H_SOURCE, EVENTS_API)])
    producer.produce(raw, orjson.dumps(good), headers=[(H_SOURCE, EVENTS_API)])
    producer.flush(10)
    invalid = Topic(hub_settings, topics.SNAPSHOTS_INVALID)
    try:
        ingest = IngestSettings(own_connection="hub_conn", enrich_batch=100)

        async def main() -> tuple[list[Any], Enricher]:
            async with AkeneoClient(url, **CREDS, backoff_base_s=0.01) as client:
                enricher = Enricher(
                    hub_settings,
                    ingest,
                    client,
                    group_id=f"g.{raw}",
                    topic=raw,
                    output_topic=out,
                    retry_base_s=0.05,
                    retry_max_s=0.2,
                )
                task = asyncio.create_task(enricher.run())
                found = await asyncio.to_thread(read_all, hub_settings, out, 2, 120.0)
                enricher.stop()
                await task  # run() returned: nothing raised out of it
                return found, enricher

        found, enricher = asyncio.run(main())
        ids = sorted(s["event_id"] for s in snapshots(found))
        assert ids == sorted([f"good-{unique}", f"author-{unique}"])
        assert enricher.stats["invalid"] == 3
        reasons = {}
        for name, key in keys.items():
            msgs = invalid.poll_for(key.decode(), 1, 60, _NoSupervisor())  # type: ignore[arg-type]
            assert len(msgs) == 1, name
            reasons[name] = dict(msgs[0].headers() or [])["error.reason"].decode()
        assert reasons == {
            "deep": "too_deep",
            "nul": "invalid_event",
            "header": "bad_header",
        }
    finally:
        invalid.close()


class _NoSupervisor:
    """Topic.poll_for checks a supervisor; the enricher here runs in this process."""

    def check(self) -> None:
        return None
