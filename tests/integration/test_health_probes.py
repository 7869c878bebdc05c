"""/healthz and /readyz of real services: ready on the real broker and database, and a service
whose loop freezes fails liveness while its /metrics still answers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, Message

from pim_hub.devstack.embedded import free_port
from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.ops.health import check_all
from pim_hub.runtime.health import HEALTH
from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde
from pim_hub.services.projections.deliveries import Projector

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "avro" / "v1"


def test_the_running_services_are_live_and_ready(pipeline: Supervisor) -> None:
    targets = [f"127.0.0.1:{port}" for port in pipeline.metrics_ports.values()]
    assert len(targets) >= 2
    found: list[Any] = []

    def all_ready() -> bool:
        found[:] = check_all(targets)
        # The mutator's loop is watched from its first timer tick, a second after its worker
        # started: it can be ready (assigned) just before.
        beating = all("loop:event-loop" in r.checks for r in found if r.service == "mutator")
        return all(r.ok for r in found) and beating

    wait_for(all_ready, timeout=120, interval=1, what="mutator and projector ready")
    by_service = {r.service: r for r in found}
    assert set(by_service) == set(pipeline.metrics_ports)
    projector = by_service["projector"].checks
    # Readiness really asked the broker and PostgreSQL, and the group assigned partitions.
    assert projector["broker"][0] and "broker(s)" in projector["broker"][1]
    assert projector["database"] == (True, "answers")
    assert projector["assigned"][0]
    assert by_service["mutator"].checks["assigned"][0]
    assert by_service["mutator"].checks["loop:event-loop"][0]


class FrozenProjector(Projector):
    """The deliveries projector whose batch hangs (a write stuck on a lock, say)."""

    liveness_allowance_s = 2.0

    def __init__(self, settings: Settings, group: str, freeze_on: bytes) -> None:
        super().__init__(settings, group)
        self.release = threading.Event()
        self.frozen = threading.Event()
        self.freeze_on = freeze_on

    def handle(
        self, consumer: Consumer, conn: psycopg.Connection[Any], msgs: list[Message]
    ) -> None:
        # Only the batch holding this test's record hangs: a new group reads the statuses
        # other tests left on the topic first, and those must go through.
        if any(m.key() == self.freeze_on for m in msgs):
            self.frozen.set()
            self.release.wait(120)
        super().handle(consumer, conn, msgs)


def test_a_projector_whose_loop_freezes_fails_liveness_not_metrics(
    hub_settings: Settings, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The health registry is the process's; services run in threads by earlier tests forgot
    # their loops when they stopped (Health.forget), so liveness starts clean without a reset.
    port = free_port()
    monkeypatch.setenv("HUB_METRICS_PORT", str(port))
    monkeypatch.setenv("HUB_METRICS_HOST", "127.0.0.1")
    projector = FrozenProjector(
        hub_settings, f"hub.projector.health-{unique}", f"health-{unique}".encode()
    )
    worker = threading.Thread(target=projector.run, daemon=True)
    base = f"http://127.0.0.1:{port}"
    worker.start()
    try:

        def status(path: str) -> int:
            try:
                return httpx.get(base + path, timeout=5).status_code
            except httpx.HTTPError:
                return 0

        wait_for(lambda: status("/healthz") == 200, timeout=120, what="projector live")
        wait_for(lambda: status("/readyz") == 200, timeout=120, what="projector ready")

        # One delivery status for the loop to take: its batch hangs.
        status_bytes = (FIXTURES / "DeliveryStatus.bin").read_bytes()
        record = Serde().decode("DeliveryStatus", status_bytes)
        record["job_id"] = f"health-{unique}"
        producer = make_producer(hub_settings)
        producer.produce(
            topics.DELIVERY_STATUS, Serde().encode("DeliveryStatus", record), key=record["job_id"]
        )
        assert producer.flush(30) == 0
        assert projector.frozen.wait(120), "the projector never took a batch"

        wait_for(lambda: status("/healthz") == 503, timeout=60, what="liveness failing")
        body = httpx.get(base + "/healthz", timeout=5).json()
        assert body["service"] == "projector"
        assert body["checks"][f"loop:{projector.group}"]["ok"] is False
        assert status("/readyz") == 503
        assert status("/metrics") == 200  # what the probes used to ask: no help here

        projector.release.set()
        wait_for(lambda: status("/healthz") == 200, timeout=60, what="live again")

        # Stopped, the projector leaves no loop behind in the process's registry.
        projector.stop()
        worker.join(30)
        assert not worker.is_alive()
        assert f"loop:{projector.group}" not in HEALTH.liveness()["checks"]
    finally:
        projector.release.set()
        projector.stop()
        worker.join(30)
        # The readiness conditions and checks this projector registered (its loop is gone).
        HEALTH.reset()


def test_the_receiver_serves_health_on_the_metrics_port_not_the_webhook_port(
    supervisor: Supervisor,
) -> None:
    """Probes ask the metrics port (never exposed); the public webhook port answers 404."""
    web_port, metrics_port = free_port(), free_port()
    supervisor.env["HUB_METRICS_PORT"] = str(metrics_port)
    supervisor.env["HUB_METRICS_HOST"] = "127.0.0.1"
    supervisor.start("ingest-web", "ingest", "web", "--port", str(web_port))
    found: list[Any] = []

    def ready() -> bool:
        supervisor.check()
        found[:] = check_all([f"127.0.0.1:{metrics_port}"])
        return bool(found[0].ok)

    wait_for(ready, timeout=120, interval=1, what="receiver live and ready")
    checks = found[0].checks
    assert found[0].service == "ingest-web"
    assert checks["broker"][0] and checks["loop:event-loop"][0]
    for path in ("/healthz", "/readyz"):
        public = httpx.get(f"http://127.0.0.1:{web_port}{path}", timeout=5)
        assert public.status_code == 404, path
        assert httpx.get(f"http://127.0.0.1:{metrics_port}{path}", timeout=5).status_code == 200
