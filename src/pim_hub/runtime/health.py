"""Liveness and readiness of a hub process, served as /healthz and /readyz on the metrics port.

/metrics alone says nothing about a service's work: the Prometheus client serves it from a
thread of its own, which keeps answering while the service's event loop or poll loop is stuck.
So each service's loop *beats* (`Health.beat`, or `watch_event_loop` for an asyncio loop):

- **/healthz** (liveness) answers 200 while every loop of the process has beaten within its
  allowance, 503 naming the stuck loop otherwise. Kubernetes restarts a pod that fails it.
- **/readyz** (readiness) answers 200 when the process can do its work: the loops are live,
  every condition the service reports (`set`: its consumer group assigned it) holds, and every
  check (`check`: the broker answers, the database answers) passes when asked.

Both answer JSON: `{"status": "ok" | "failing", "service": ..., "checks": {name: {"ok": bool,
"detail": str}}}`. `hub health` reads them from every service.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram

#: A loop that has not beaten for this long is stuck (seconds), unless it says otherwise.
DEFAULT_ALLOWANCE_S = 30.0
#: A consumer's poll loop may take this long between polls before the group drops it
#: (librdkafka's max.poll.interval.ms, 300 s): beyond that it is stuck, not busy.
POLL_ALLOWANCE_S = 300.0
#: How often `watch_event_loop` beats from inside an asyncio loop (seconds).
TICK_S = 0.25
#: A readiness check that takes longer than this fails (seconds).
CHECK_TIMEOUT_S = 3.0

#: How late each beat of `watch_event_loop` ran after it was due: the time a callback, a
#: request or a socket read waits in that loop before it runs (a busy loop, or a process
#: waiting for a core). Defined here, not in `metrics`, which imports this module.
EVENT_LOOP_LAG = Histogram(
    "pimhub_event_loop_lag_seconds",
    "How late an asyncio loop ran a callback that was due, by loop",
    ["loop"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

#: A readiness check: returns a detail string, raises when the dependency does not answer.
Check = Callable[[], str]


@dataclass
class _Loop:
    allowance_s: float
    last: float
    beats: int = 0


class Health:
    """The liveness of a process's loops and the readiness of its dependencies."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = ""
        self._clock = clock
        self._lock = threading.Lock()
        self._loops: dict[str, _Loop] = {}
        self._conditions: dict[str, tuple[bool, str]] = {}
        self._checks: dict[str, Check] = {}

    # ---- what services report ----------------------------------------------------------

    def beat(self, loop: str = "main", allowance_s: float | None = None) -> None:
        """The loop `loop` made progress now; it is stuck if the next beat is later than
        `allowance_s` (kept from the first beat when not given)."""
        now = self._clock()
        with self._lock:
            state = self._loops.get(loop)
            if state is None:
                self._loops[loop] = _Loop(allowance_s or DEFAULT_ALLOWANCE_S, now, 1)
                return
            state.last = now
            state.beats += 1
            if allowance_s is not None:
                state.allowance_s = allowance_s

    def forget(self, loop: str) -> None:
        """The loop ended on purpose (a clean stop): no longer watched.

        Every service calls it for its loops on its way out: the registry is the process's,
        and a stopped service's last beat would otherwise age until it failed the liveness
        of whatever still runs in the process (another service in a thread, a test).
        """
        with self._lock:
            self._loops.pop(loop, None)

    def set(self, condition: str, ok: bool, detail: str = "") -> None:
        """A readiness condition the service knows itself (e.g. `assigned`)."""
        with self._lock:
            self._conditions[condition] = (ok, detail)

    def check(self, name: str, probe: Check) -> None:
        """A readiness check run when /readyz is asked (e.g. the broker answers)."""
        with self._lock:
            self._checks[name] = probe

    def reset(self) -> None:
        """Forget every loop, condition and check (tests, and a process that restarts)."""
        with self._lock:
            self._loops.clear()
            self._conditions.clear()
            self._checks.clear()

    # ---- what probes read --------------------------------------------------------------

    def liveness(self) -> dict[str, Any]:
        """Each loop's state; `status` is failing when one has not beaten in its allowance."""
        now = self._clock()
        with self._lock:
            loops = dict(self._loops)
        checks = {}
        for name, state in loops.items():
            age = now - state.last
            ok = age <= state.allowance_s
            checks[f"loop:{name}"] = {
                "ok": ok,
                "detail": f"last progress {age:.1f}s ago (allowed {state.allowance_s:.0f}s)",
            }
        return self._answer(checks)

    def readiness(self, timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, Any]:
        """Liveness, the service's conditions and every check, run now (each bounded)."""
        checks = dict(self.liveness()["checks"])
        with self._lock:
            conditions = dict(self._conditions)
            probes = dict(self._checks)
        for name, (ok, detail) in conditions.items():
            checks[name] = {"ok": ok, "detail": detail}
        for name, probe in probes.items():
            checks[name] = _run_bounded(probe, timeout_s)
        if not checks:
            checks["started"] = {"ok": False, "detail": "the service reported nothing yet"}
        return self._answer(checks)

    def _answer(self, checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
        ok = all(c["ok"] for c in checks.values())
        return {"status": "ok" if ok else "failing", "service": self.service, "checks": checks}


def _run_bounded(probe: Check, timeout_s: float) -> dict[str, Any]:
    """Run a check in a thread of its own: a hung dependency fails it instead of the probe."""
    result: dict[str, Any] = {"ok": False, "detail": f"no answer within {timeout_s:g}s"}

    def run() -> None:
        try:
            result.update(ok=True, detail=probe())
        except Exception as exc:  # any failure of a dependency is "not ready", with its reason
            result.update(ok=False, detail=f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=run, name="readiness-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return dict(result)


#: The process's health, served by `metrics.serve_metrics` next to /metrics.
HEALTH = Health()


def watch_event_loop(
    loop: asyncio.AbstractEventLoop | None = None,
    name: str = "event-loop",
    allowance_s: float = DEFAULT_ALLOWANCE_S,
    health: Health | None = None,
) -> Callable[[], None]:
    """Beat from inside an asyncio loop every `TICK_S`: a loop blocked by a synchronous call
    (or a callback that never yields) stops beating and fails liveness. Each beat's delay
    past its due time goes to `EVENT_LOOP_LAG`.

    Callable from the loop's thread or any other (the first beat is scheduled thread-safely).

    Returns:
        A function that ends the watch and forgets the loop (`Health.forget`), from any
        thread: a service calls it when it stops. No tick beats after it returns, even one
        already scheduled while the loop shuts down.
    """
    loop = loop or asyncio.get_running_loop()
    watched = health if health is not None else HEALTH  # the process's, as it is now
    watched.beat(name, allowance_s)
    watching = [True]
    guard = threading.Lock()
    lag = EVENT_LOOP_LAG.labels(name)

    def tick(due: float | None = None) -> None:
        with guard:
            if not watching[0] or loop.is_closed():
                return
            # With the allowance each time: a second watch of the same name in the process
            # (two services in threads) beats it back after the first one's stop.
            watched.beat(name, allowance_s)
        now = loop.time()
        if due is not None:
            lag.observe(max(now - due, 0.0))
        loop.call_at(now + TICK_S, tick, now + TICK_S)

    def stop() -> None:
        with guard:
            watching[0] = False
            watched.forget(name)

    loop.call_soon_threadsafe(tick)
    return stop


# ---- common readiness checks ----------------------------------------------------------------


def broker_check(config: dict[str, Any], timeout_s: float = 2.0) -> Check:
    """A check that the Kafka cluster answers a metadata request (one admin client, reused)."""
    client: list[Any] = []

    def probe() -> str:
        from confluent_kafka.admin import AdminClient

        if not client:
            client.append(AdminClient(config))
        meta = client[0].list_topics(timeout=timeout_s)
        return f"{len(meta.brokers)} broker(s), {len(meta.topics)} topics"

    return probe


def database_check(url: str, timeout_s: int = 2) -> Check:
    """A check that PostgreSQL answers (a fresh connection: a pool could hide a dead server)."""

    def probe() -> str:
        import psycopg

        with psycopg.connect(url, connect_timeout=timeout_s) as conn:
            conn.execute("SELECT 1")
        return "answers"

    return probe
