"""Fan-out through the running pipeline: two drivers, priorities, overrides, live enable/disable."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import query, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.drivers.discovery import discover
from pim_hub.registry.changes import KafkaChangePublisher
from pim_hub.registry.model import Integration, IntegrationError
from pim_hub.registry.service import Registry
from pim_hub.runtime.kafka import consumer_config, make_producer, produce_sync
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import ordering, topics
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.core.fanout import job_id, job_key

pytestmark = pytest.mark.integration

#: Enabling or disabling must reach the fan-out within 5 s; snapshots are sent after this.
PROPAGATION_S = 4.0
JOB_TOPICS = [topic for _, topic in topics.PRIORITIES.values()]
PRIORITY_OF = {topic: name for name, (_, topic) in topics.PRIORITIES.items()}


class JobReader:
    """Reads the jobs topics with a consumer of its own; keeps the jobs of some integrations."""

    def __init__(self, settings: Settings, group: str, integration_ids: set[str]) -> None:
        self.ids = integration_ids
        self.serde = Serde()
        self.jobs: list[dict[str, Any]] = []
        self.consumer = Consumer(consumer_config(settings, group))
        parts = []
        for topic in JOB_TOPICS:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        self.consumer.assign(parts)

    def poll(self) -> list[dict[str, Any]]:
        for msg in self.consumer.consume(500, 0.2):
            if msg.error():
                continue
            job = self.serde.decode("Job", msg.value(), topic=msg.topic())
            if job["integration_id"] in self.ids:
                job["_topic"], job["_key"] = msg.topic(), (msg.key() or b"").decode()
                prev = ordering.prev_job(msg.headers())
                job["_prev"] = prev[0] if prev is not None else None
                self.jobs.append(job)
        return self.jobs

    def wait(
        self, check: Callable[[list[dict[str, Any]]], bool], what: str, sup: Supervisor
    ) -> None:
        wait_for(lambda: check(self.poll()), timeout=90, what=what, supervisor=sup)

    def close(self) -> None:
        self.consumer.close()


def _product(uuid: str, sku: str, price: str, description: str, updated: str) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "identifier": sku,
        "enabled": True,
        "family": "shoes",
        "categories": ["men"],
        "groups": [],
        "parent": None,
        "values": {
            "sku": [{"locale": None, "scope": None, "data": sku}],
            "description": [{"locale": "en_US", "scope": "ecommerce", "data": description}],
            "price": [
                {"locale": None, "scope": None, "data": [{"amount": price, "currency": "EUR"}]}
            ],
        },
        "associations": {},
        "updated": updated,
    }


def V(n: int) -> str:
    return f"2026-03-0{n}T10:00:00+00:00"


def test_jobs_follow_drivers_filters_priorities_overrides_and_live_enable(
    pipeline: Supervisor,
    supervisor: Supervisor,
    hub_settings: Settings,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    wh, lg = f"wh-{unique}", f"log-{unique}"
    # The log driver's own dispatchers (the pipeline runs webhook ones only).
    for priority in ("immediate", "normal", "low"):
        supervisor.start(
            f"dispatcher-log-{priority}", "dispatcher", "--driver", "log", "--priority", priority
        )
    registry = Registry(database_url, discover(), KafkaChangePublisher(hub_settings))
    registry.add(
        Integration(
            wh, "webhook", "webhook", True, {"url": f"{http_sink.url}/{unique}"}, ["product"], {}
        )
    )
    registry.add(
        Integration(
            lg,
            "log",
            "log",
            True,
            {"dsn": database_url},
            None,
            {"attributes": {"description": "immediate", "price": "low"}},
        )
    )
    added = time.monotonic()
    reader = JobReader(hub_settings, f"test-fanout-{unique}", {wh, lg})
    serde = Serde()
    producer = make_producer(hub_settings)
    uuid = f"00000000-0000-4000-a000-{unique:0>12}"[:36]
    pkey, ckey = f"product:{uuid}", f"category:cat-{unique}"

    def snapshot(etype: str, key: str, payload: dict[str, Any], version: str) -> None:
        record = snapshot_record(etype, key, payload, version, "external")
        produce_sync(producer, topics.SNAPSHOTS, serde.encode("Snapshot", record), key=key)

    def product(n: int, price: str, description: str) -> None:
        snapshot("product", pkey, _product(uuid, f"S-{unique}", price, description, V(n)), V(n))

    def seen() -> set[tuple[str, str, str | None, str]]:
        return {
            (
                j["integration_id"],
                j["mutation"]["entity_key"],
                j["mutation"]["version"],
                PRIORITY_OF[j["_topic"]],
            )
            for j in reader.jobs
        }

    def settle(since: float) -> None:
        time.sleep(max(0.0, since + PROPAGATION_S - time.monotonic()))

    try:
        settle(added)
        # create: a new product takes the product default (normal) for both, whatever fields it
        # carries; the category goes only to the log integration (the webhook one filters on
        # products), at the category default.
        product(1, "10.00", "soft")
        snapshot(
            "category",
            ckey,
            {"code": f"cat-{unique}", "labels": {"en_US": "C"}, "updated": V(1)},
            V(1),
        )
        step1 = {
            (wh, pkey, V(1), "normal"),
            (lg, pkey, V(1), "normal"),
            (lg, ckey, V(1), "low"),
        }
        reader.wait(lambda _: step1 <= seen(), "jobs of the creates", pipeline)

        product(2, "12.00", "soft")  # price: immediate by default, low by the log's own map
        step2 = {(wh, pkey, V(2), "immediate"), (lg, pkey, V(2), "low")}
        reader.wait(lambda _: step2 <= seen(), "jobs of the price change", pipeline)

        product(3, "12.00", "softer")  # description: normal by default, immediate for the log
        product(3, "12.00", "softer")  # a duplicate snapshot makes no mutation, hence no job
        step3 = {(wh, pkey, V(3), "normal"), (lg, pkey, V(3), "immediate")}
        reader.wait(lambda _: step3 <= seen(), "jobs of the description change", pipeline)

        registry.set_enabled(lg, False)
        settle(time.monotonic())
        product(4, "12.00", "softest")
        step4 = {(wh, pkey, V(4), "normal")}
        reader.wait(lambda _: step4 <= seen(), "job of the change after the disable", pipeline)

        registry.set_enabled(lg, True)
        settle(time.monotonic())
        product(5, "15.00", "softest")
        step5 = {(wh, pkey, V(5), "immediate"), (lg, pkey, V(5), "low")}
        reader.wait(lambda _: step5 <= seen(), "jobs of the change after the enable", pipeline)

        # Replay the mutation of step 2 onto the mutation log: same job ids, nothing new.
        before = {j["job_id"] for j in reader.jobs}
        count = len(reader.jobs)
        v2 = next(j for j in reader.jobs if j["mutation"]["version"] == V(2))["mutation"]
        produce_sync(producer, topics.MUTATIONS, serde.encode("Mutation", v2), key=pkey)
        reader.wait(lambda jobs: len(jobs) >= count + 2, "jobs of the replayed mutation", pipeline)
        time.sleep(1.5)  # anything extra (a job of the disabled step, a second id) shows up now
        reader.poll()

        expected = step1 | step2 | step3 | step4 | step5
        assert seen() == expected
        assert {j["job_id"] for j in reader.jobs} == before, "a replay never makes a new job id"
        for j in reader.jobs:
            m = j["mutation"]
            assert j["job_id"] == job_id(m["mutation_id"], j["integration_id"])
            assert j["_key"] == job_key(j["integration_id"], m["entity_key"])
            assert j["priority"] == PRIORITY_OF[j["_topic"]]
            assert j["driver"] == ("webhook" if j["integration_id"] == wh else "log")

        # Each job names its entity's previous job for the same integration (the one it must
        # not overtake in another lane); none for a creation, none for the first job after
        # the log integration was enabled again (the mutation before made no job for it).
        def job_of(integ: str, key: str, n: int) -> str:
            return str(
                next(
                    j["job_id"]
                    for j in reader.jobs
                    if j["integration_id"] == integ
                    and j["mutation"]["entity_key"] == key
                    and j["mutation"]["version"] == V(n)
                )
            )

        expected_prev = {
            (wh, 1): None,
            (wh, 2): job_of(wh, pkey, 1),
            (wh, 3): job_of(wh, pkey, 2),
            (wh, 4): job_of(wh, pkey, 3),
            (wh, 5): job_of(wh, pkey, 4),
            (lg, 1): None,
            (lg, 2): job_of(lg, pkey, 1),
            (lg, 3): job_of(lg, pkey, 2),
            (lg, 5): None,
        }
        for (integ, n), prev in expected_prev.items():
            # The first job of each: the copy of step 2 written to the log by hand above
            # carries no header, so its jobs name nothing.
            named = next(
                j["_prev"]
                for j in reader.jobs
                if j["integration_id"] == integ
                and j["mutation"]["entity_key"] == pkey
                and j["mutation"]["version"] == V(n)
            )
            assert named == prev, (integ, n, named)
        # Exactly one job per (integration, mutation) apart from the two replayed ones.
        per_mutation = [(j["integration_id"], j["mutation"]["mutation_id"]) for j in reader.jobs]
        assert len(per_mutation) == len(expected) + 2 and len(set(per_mutation)) == len(expected)

        # Both drivers delivered: the webhook to the sink, the log driver to its table.
        wait_for(
            lambda: (
                {b["version"] for b in http_sink.bodies(pkey) if b["integration_id"] == wh}
                >= {V(n) for n in range(1, 6)}
            ),
            timeout=60,
            what="webhook deliveries",
            supervisor=pipeline,
        )
        assert not http_sink.bodies(ckey), "the webhook integration filters categories out"
        # The dispatcher's version guard may skip an older job that a faster priority overtook;
        # every job still ends with a status, and each delivered one is in the log's table.
        lg_jobs = {j["job_id"]: j for j in reader.jobs if j["integration_id"] == lg}

        def outcomes() -> dict[str, str]:
            rows = query(
                database_url, "SELECT job_id, status FROM deliveries WHERE integration_id = %s", lg
            )
            return {
                r["job_id"]: r["status"] for r in rows if r["status"] in ("delivered", "skipped")
            }

        wait_for(
            lambda: outcomes().keys() == lg_jobs.keys(),
            timeout=60,
            what="final statuses of the log jobs",
            supervisor=supervisor,
        )
        done = outcomes()
        rows = query(
            database_url, "SELECT * FROM driver_log_deliveries WHERE integration_id = %s", lg
        )
        delivered = {jid for jid, status in done.items() if status == "delivered"}
        assert delivered and {r["job_id"] for r in rows} == delivered
        for r in rows:
            assert r["priority"] == lg_jobs[r["job_id"]]["priority"]
            assert r["version"] == lg_jobs[r["job_id"]]["mutation"]["version"]
    finally:
        reader.close()
        for iid in (wh, lg):
            with contextlib.suppress(IntegrationError):
                registry.remove(iid)
