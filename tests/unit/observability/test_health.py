"""/healthz follows the service's own loop (not the metrics thread); /readyz its dependencies."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.runtime import health as health_mod
from pim_hub.runtime.health import Health, watch_event_loop
from pim_hub.runtime.metrics import serve_metrics


@pytest.fixture
def served() -> tuple[Health, str]:
    """A fresh Health served on a free port, with /metrics beside it."""
    health = Health()
    health.service = "unit"
    port = serve_metrics(0, "127.0.0.1", health=health)
    return health, f"http://127.0.0.1:{port}"


def wait_status(url: str, status: int, timeout: float = 15) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(url, timeout=5)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


@pytest.fixture
def poll_loop(served: tuple[Health, str]) -> Iterator[threading.Event]:
    """A poll loop that beats every 50 ms until the returned event is cleared (frozen)."""
    health, _ = served
    running, stop = threading.Event(), threading.Event()
    running.set()

    def loop() -> None:
        while not stop.is_set():
            running.wait()  # frozen while cleared, like a loop stuck in a call
            health.beat("poll", allowance_s=1.0)
            time.sleep(0.05)

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    yield running
    stop.set()
    running.set()
    worker.join(5)


def test_a_stuck_poll_loop_fails_liveness_while_metrics_still_answer(
    served: tuple[Health, str], poll_loop: threading.Event
) -> None:
    _, base = served
    assert wait_status(f"{base}/healthz", 200).status_code == 200
    poll_loop.clear()  # the loop stops making progress
    resp = wait_status(f"{base}/healthz", 503)
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "failing" and body["service"] == "unit"
    assert body["checks"]["loop:poll"]["ok"] is False
    assert "last progress" in body["checks"]["loop:poll"]["detail"]
    # The metrics thread is fine: /metrics answers, which is why probes must not use it.
    assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200
    assert wait_status(f"{base}/readyz", 503).status_code == 503
    poll_loop.set()  # progress again: live again
    assert wait_status(f"{base}/healthz", 200).status_code == 200


def test_a_blocked_event_loop_fails_liveness(
    served: tuple[Health, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    health, base = served
    monkeypatch.setattr(health_mod, "TICK_S", 0.05)
    loop = asyncio.new_event_loop()
    unblock = threading.Event()
    worker = threading.Thread(target=loop.run_forever, daemon=True)
    worker.start()
    try:
        watch_event_loop(loop, allowance_s=1.0, health=health)
        assert wait_status(f"{base}/healthz", 200).status_code == 200
        # A synchronous call on the loop (a blocking client, a CPU-bound parse) blocks it.
        loop.call_soon_threadsafe(unblock.wait, 30)
        resp = wait_status(f"{base}/healthz", 503)
        assert resp.status_code == 503, resp.text
        assert resp.json()["checks"]["loop:event-loop"]["ok"] is False
        unblock.set()
        assert wait_status(f"{base}/healthz", 200).status_code == 200
    finally:
        unblock.set()
        loop.call_soon_threadsafe(loop.stop)
        worker.join(5)
        loop.close()


def test_readiness_needs_every_condition_and_check(served: tuple[Health, str]) -> None:
    health, base = served
    # Nothing reported yet: not ready (a service that never started its loop).
    assert httpx.get(f"{base}/readyz").status_code == 503
    health.beat("poll")
    health.set("assigned", False, "waiting for the group")
    health.check("database", lambda: "answers")
    resp = httpx.get(f"{base}/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["assigned"] == {"ok": False, "detail": "waiting for the group"}
    health.set("assigned", True, "3 partition(s)")
    resp = httpx.get(f"{base}/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json()["checks"]["database"] == {"ok": True, "detail": "answers"}

    def broker_down() -> str:
        raise ConnectionError("all brokers down")

    health.check("broker", broker_down)
    resp = httpx.get(f"{base}/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["broker"]["detail"] == "ConnectionError: all brokers down"
    # Liveness does not depend on the broker: restarting would not bring it back.
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_a_hung_check_fails_in_bounded_time() -> None:
    health = Health()
    health.beat("poll")
    hang = threading.Event()
    health.check("database", lambda: str(hang.wait(30)))
    started = time.monotonic()
    answer = health.readiness(timeout_s=0.5)
    hang.set()
    assert time.monotonic() - started < 5
    assert answer["status"] == "failing"
    assert answer["checks"]["database"] == {"ok": False, "detail": "no answer within 0.5s"}


def test_real_checks_name_an_unreachable_database_and_broker() -> None:
    db = health_mod.database_check("postgresql://hub@127.0.0.1:1/none", timeout_s=1)
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        db()
    broker = health_mod.broker_check({"bootstrap.servers": "127.0.0.1:1"}, timeout_s=0.5)
    with pytest.raises(Exception):  # noqa: B017 - librdkafka raises KafkaException
        broker()


def test_hub_health_reports_each_service_and_fails_on_one_not_live(
    served: tuple[Health, str], poll_loop: threading.Event
) -> None:
    _, base = served
    other = Health()
    other.service = "other"
    other.beat("poll", allowance_s=0.2)
    other_base = f"http://127.0.0.1:{serve_metrics(0, '127.0.0.1', health=other)}"
    time.sleep(0.5)  # `other` never beats again: stuck
    runner = CliRunner()
    done = runner.invoke(app, ["health", base])
    assert done.exit_code == 0, done.output
    assert done.output.startswith("ok") and "unit" in done.output
    done = runner.invoke(app, ["health", base, other_base.removeprefix("http://") + "/metrics"])
    assert done.exit_code == 1, done.output
    assert "NOT LIVE" in done.output and "loop:poll: last progress" in done.output
    done = runner.invoke(app, ["health", "--json", "127.0.0.1:1"])
    assert done.exit_code == 1
    assert '"live": false' in done.output and "ConnectError" in done.output


def test_a_forgotten_loop_no_longer_fails_liveness() -> None:
    now = [0.0]
    health = Health(clock=lambda: now[0])
    health.beat("poll", 5.0)
    health.beat("other", 50.0)
    now[0] = 10.0  # "poll" stopped beating: its service stopped
    assert health.liveness()["status"] == "failing"
    health.forget("poll")
    live = health.liveness()
    assert live["status"] == "ok" and set(live["checks"]) == {"loop:other"}
    health.forget("never-watched")  # nothing to forget: no error


def test_stopping_an_event_loop_watch_forgets_the_loop_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_mod, "TICK_S", 0.01)
    health = Health()
    loop = asyncio.new_event_loop()
    worker = threading.Thread(target=loop.run_forever, daemon=True)
    worker.start()
    try:
        unwatch = watch_event_loop(loop, name="watched", allowance_s=1.0, health=health)
        deadline = time.monotonic() + 10
        while health._loops["watched"].beats < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert health._loops["watched"].beats >= 3
        unwatch()
        assert "loop:watched" not in health.liveness()["checks"]
        time.sleep(0.1)  # ten ticks' time, the loop still running: none beats again
        assert "loop:watched" not in health.liveness()["checks"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        worker.join(5)
        loop.close()


def test_a_stopped_mutator_worker_forgets_its_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pim_hub.runtime.settings import Settings
    from pim_hub.services.mutator.app import make_app, watch_health
    from pim_hub.services.mutator.settings import MutatorSettings

    mutator = MutatorSettings(app_id=f"health-{tmp_path.name}", data_dir=str(tmp_path))
    app = make_app(Settings(kafka_bootstrap="127.0.0.1:9"), mutator, "fanout")
    watch_health(app)
    fresh = Health()  # the process's registry keeps nothing of this test
    monkeypatch.setattr(health_mod, "HEALTH", fresh)
    fresh.beat("event-loop")
    asyncio.run(app.on_before_shutdown.send())
    assert "loop:event-loop" not in fresh.liveness()["checks"]


def test_the_event_loop_watch_measures_how_late_the_loop_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_mod, "TICK_S", 0.02)
    lag = health_mod.EVENT_LOOP_LAG.labels("lagging")
    loop = asyncio.new_event_loop()
    worker = threading.Thread(target=loop.run_forever, daemon=True)
    worker.start()

    def observed() -> tuple[float, float]:
        samples = {
            s.name: s.value
            for metric in lag.collect()
            for s in metric.samples
            if not s.labels.get("le")
        }
        return samples["pimhub_event_loop_lag_seconds_count"], samples[
            "pimhub_event_loop_lag_seconds_sum"
        ]

    try:
        unwatch = watch_event_loop(loop, name="lagging", allowance_s=5.0, health=Health())
        time.sleep(0.3)
        idle_count, idle_sum = observed()
        assert idle_count >= 5 and idle_sum / idle_count < 0.1  # an idle loop is about on time
        # A callback holding the loop for 0.4 s makes the next beat that much late.
        loop.call_soon_threadsafe(time.sleep, 0.4)
        deadline = time.monotonic() + 10
        while observed()[1] - idle_sum < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert observed()[1] - idle_sum >= 0.3
        unwatch()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        worker.join(5)
        loop.close()
