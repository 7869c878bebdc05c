"""Scale-out: three mutators and three dispatchers per group, one of each SIGKILLed mid-stream.

The test runs its own groups so it cannot disturb (or be disturbed by) the shared `pipeline`:
- dispatchers use the driver key `webhook_scale` (the webhook driver under another key, loaded
  through HUB_EXTRA_DRIVERS), so their group `hub.dispatch.webhook_scale.normal` is theirs alone
  and every other group skips these jobs as foreign;
- mutators use their own app id (= consumer group) whose offsets are first set to the end of
  the input topics, so they process this test's snapshots only, not the session's history.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest
from confluent_kafka import Consumer, TopicPartition

from pim_hub.devstack.sink import HttpSink, Received
from pim_hub.devstack.supervisor import Service, Supervisor
from pim_hub.drivers.base import DeliveryResult, IntegrationContext
from pim_hub.drivers.discovery import GROUP, discover
from pim_hub.drivers.webhook.driver import WebhookConfig, WebhookDriver
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime.kafka import consumer_config, make_producer
from pim_hub.runtime.logread import ephemeral_consumer, log_bounds, partitions_of
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.entities import entity_key
from pim_hub.schemas.events import Job
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.services.dispatcher.app import group_id

pytestmark = pytest.mark.integration

DRIVER_KEY = "webhook_scale"
DRIVER_REF = f"{__name__}:ScaleWebhookDriver"
PRIORITY = "normal"
PID_HEADER = "X-Scale-Pid"
ENTITIES = 30
VERSIONS = 3
WORKERS = 3
#: Everything urgent by default (create, enabled, prices) goes to `normal` for this integration.
ALL_NORMAL = {
    "operations": {"create": "normal", "update": "normal", "delete": "normal"},
    "fields": {"enabled": "normal"},
    "price_collections": "normal",
    "default": "normal",
}


class ScaleWebhookDriver(WebhookDriver):
    """The webhook driver under a key of its own: a consumer group no other test shares."""

    key: ClassVar[str] = DRIVER_KEY
    name: ClassVar[str] = "Webhook (scale test)"

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """POST like the webhook driver, naming the worker process that delivered."""
        config = context.config
        assert isinstance(config, WebhookConfig)
        headers = {**config.headers, PID_HEADER: str(os.getpid())}
        tagged = replace(context, config=config.model_copy(update={"headers": headers}))
        return await super().handle(job, tagged)


def _product(uid: str, sku: str, n: int) -> dict[str, Any]:
    return {
        "uuid": uid,
        "identifier": sku,
        "enabled": True,
        "family": "shoes",
        "categories": ["men"],
        "values": {
            "sku": [{"locale": None, "scope": None, "data": sku}],
            "color": [{"locale": None, "scope": None, "data": f"colour-{n}"}],
        },
        "updated": f"2024-06-0{n}T10:00:00+00:00",
    }


def _park_group_at_the_end(settings: Settings, group: str, names: list[str]) -> None:
    """Commit the group's offsets at the true log ends: it starts with new records only."""
    offsets = [TopicPartition(t, p, end) for (t, p), end in _log_ends(settings, names).items()]
    consumer = Consumer(consumer_config(settings, group))
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def _wait(
    cond: Any, timeout: float, sup: Supervisor, what: str | Callable[[], str], poll: float = 0.3
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = cond()
        if result:
            return result
        sup.check()
        time.sleep(poll)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}"
    )


def _start(sup: Supervisor, name: str, *args: str, data_dir: Path | None = None) -> Service:
    if data_dir is not None:
        sup.env["HUB_MUTATOR_DATA_DIR"] = str(data_dir)
    return sup.start(name, *args)


def test_groups_survive_losing_a_mutator_and_a_dispatcher_mid_stream(
    supervisor: Supervisor,
    hub_settings: Settings,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
    tmp_path: Path,
) -> None:
    repo_root = str(Path(__file__).resolve().parents[2])
    app_id = f"hub-mutator-scale-{unique}"
    supervisor.env.update(
        {
            "HUB_EXTRA_DRIVERS": f"{DRIVER_KEY}={DRIVER_REF}",
            "HUB_MUTATOR_APP_ID": app_id,
            "PYTHONPATH": os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")])),
        }
    )
    path = f"/scale/{unique}"
    integration = f"scale-{unique}"
    catalogue = discover([EntryPoint(name=DRIVER_KEY, value=DRIVER_REF, group=GROUP)])
    upsert_integration(
        database_url,
        catalogue,
        Integration(
            integration,
            integration,
            DRIVER_KEY,
            True,
            {"url": f"{http_sink.url}{path}"},
            ["product"],
            ALL_NORMAL,
        ),
    )
    _park_group_at_the_end(
        hub_settings, app_id, [topics.SNAPSHOTS, topics.SNAPSHOTS_BULK, topics.MUTATIONS]
    )

    mutators = [
        _start(supervisor, f"mutator-{i}", "mutator", data_dir=tmp_path / f"mutator-{i}")
        for i in range(WORKERS)
    ]
    dispatchers = [
        _start(
            supervisor,
            f"dispatcher-{i}",
            "dispatcher",
            "--driver",
            DRIVER_KEY,
            "--priority",
            PRIORITY,
        )
        for i in range(WORKERS)
    ]
    disp_group = group_id(DRIVER_KEY, PRIORITY)
    jobs_topic = topics.job_topic(PRIORITY)

    serde = Serde()
    producer = make_producer(hub_settings)
    products = [(str(uuid.uuid4()), f"scale-{unique}-{i}") for i in range(ENTITIES)]
    keys = {entity_key("product", _product(uid, sku, 1)): (uid, sku) for uid, sku in products}

    def publish(version: int) -> None:
        for uid, sku in products:
            payload = _product(uid, sku, version)
            key = entity_key("product", payload)
            record = snapshot_record("product", key, payload, payload["updated"], "external")
            producer.produce(topics.SNAPSHOTS, serde.encode("Snapshot", record), key=key)
        assert producer.flush(30) == 0

    def mine() -> list[dict[str, Any]]:
        # A body that is not JSON is a request cut off by the SIGKILL: not a delivery (the
        # killed dispatcher never saw an answer, so the job is delivered again).
        with http_sink.lock:
            return [
                r.body for r in http_sink.requests if r.path == path and isinstance(r.body, dict)
            ]

    publish(1)
    publish(2)
    # Mid-stream: some jobs are delivered, most are still ahead. The dispatcher to kill is one
    # that has delivered, so it surely owns partitions with work.
    _wait(lambda: len(mine()) >= 5, 90, supervisor, "the first deliveries")
    with http_sink.lock:
        active = {_pid(r) for r in http_sink.requests if r.path == path}
    doomed = next(d for d in dispatchers if str(d.process.pid) in active)
    survivors = [d for d in dispatchers if d is not doomed]
    victim = str(doomed.process.pid)
    supervisor.kill(mutators[0])
    supervisor.kill(doomed)
    before_kill = len(mine())
    with http_sink.lock:
        cut = len(http_sink.requests)  # the sink is shared by the session: index its own list
    publish(3)

    expected = ENTITIES * VERSIONS

    def complete() -> bool:
        final: dict[str, str] = {}
        for body in mine():
            if body["version"] >= final.get(body["entity_key"], ""):
                final[body["entity_key"]] = body["version"]
        return (
            len({b["job_id"] for b in mine()}) >= expected
            and all(v == _product("", "", VERSIONS)["updated"] for v in final.values())
            and len(final) == ENTITIES
        )

    def progress() -> str:
        versions = [_product("", "", n)["updated"] for n in range(1, VERSIONS + 1)]
        seen = {(b["entity_key"], b["version"]) for b in mine()}
        missing = sorted((keys[k][1], v) for k in keys for v in versions if (k, v) not in seen)
        foreign = {k for k, _ in seen} - set(keys)
        return (
            f"{expected} distinct deliveries; {len({b['job_id'] for b in mine()})} arrived, "
            f"missing (sku, version) {missing[:10]} ({len(missing)}), foreign {len(foreign)}"
        )

    _wait(complete, 120, supervisor, progress)

    bodies = mine()
    by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for body in bodies:
        by_entity[body["entity_key"]].append(body)
    assert set(by_entity) == set(keys)
    for key, received in by_entity.items():
        # Every version's mutation arrived; duplicates (at-least-once) carry the same job id.
        versions = {b["version"] for b in received}
        assert versions == {_product("", "", n)["updated"] for n in range(1, VERSIONS + 1)}, key
        jobs_by_version: dict[str, set[str]] = defaultdict(set)
        for b in received:
            jobs_by_version[b["version"]].add(b["job_id"])
        assert all(len(j) == 1 for j in jobs_by_version.values()), f"{key}: one job per mutation"
        # The target's final state is the last version, whatever order duplicates came in.
        newest = max(received, key=lambda b: b["version"])
        assert newest["state"]["values"]["color"][0]["data"] == f"colour-{VERSIONS}"
    assert len({b["job_id"] for b in bodies}) == expected

    # The killed dispatcher owned partitions with work; everything after the kill (all of
    # version 3, on every entity's partition) was delivered by the survivors: its partitions
    # were reassigned. Both groups end committed at the end of every partition.
    assert before_kill < expected
    with http_sink.lock:
        pids = {
            _pid(r) for r in http_sink.requests[cut:] if r.path == path and isinstance(r.body, dict)
        }
    assert victim not in pids and len(pids) >= 1
    assert pids <= {str(d.process.pid) for d in survivors}

    def caught_up(group: str, topic: str) -> bool:
        committed = _committed(hub_settings, group, topic)
        high = {p: end for (_, p), end in _log_ends(hub_settings, [topic]).items()}
        lagging[group] = {
            p: (committed.get(p), h) for p, h in high.items() if committed.get(p) != h
        }
        return not lagging[group]

    lagging: dict[str, dict[int, tuple[int | None, int]]] = {}

    _wait(lambda: caught_up(disp_group, jobs_topic), 30, supervisor, "dispatchers caught up")
    _wait(
        lambda: caught_up(app_id, topics.SNAPSHOTS),
        30,
        supervisor,
        lambda: f"mutators caught up; (committed, end) by partition: {lagging[app_id]}",
    )
    assert len(supervisor.services) == 2 * (WORKERS - 1)  # the survivors are still running


def _pid(request: Received) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == PID_HEADER.lower()), "")


def _log_ends(settings: Settings, names: list[str]) -> dict[tuple[str, int], int]:
    """The true end of every partition of the topics.

    Not the listed high watermark: the embedded broker lists the base offset of a partition's
    last record batch plus one, so a group at the end would look behind (see pim_hub.ops.offsets).
    """
    consumer = ephemeral_consumer(settings, "scale-test")
    try:
        tps = [(name, p) for name in names for p in partitions_of(consumer, name)]
        return {tp: end for tp, (_, end) in log_bounds(consumer, tps).items()}
    finally:
        consumer.close()


def _committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer(consumer_config(settings, group))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()
