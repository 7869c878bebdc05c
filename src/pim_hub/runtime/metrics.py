"""Prometheus metrics of every hub service, and the server each one runs: /metrics, and
/healthz and /readyz from `runtime.health`."""

from __future__ import annotations

import logging
import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from pydantic_settings import BaseSettings, SettingsConfigDict

from pim_hub.runtime import tracing
from pim_hub.runtime.health import HEALTH, Health, broker_check, database_check

logger = logging.getLogger(__name__)

# Naming follows Prometheus conventions: prefix pimhub_, counters end in _total (the client adds
# it), durations are histograms in seconds. Labels are bounded: driver, integration, priority,
# entity type, outcome, status. Never an entity key, SKU or product: those are unbounded.

#: Buckets for work that takes milliseconds to seconds (HTTP calls, deliveries, batches).
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets for end-to-end latency, which includes retries (seconds to hours).
LATENCY_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
)

# ---- every service ------------------------------------------------------------------------

SERVICE_INFO = Gauge("pimhub_service_info", "1 for each running hub service process", ["service"])

# The console's sign-in form: ok, wrong (name or password), limited (refused with 429 by the
# sign-in limits before the password was checked). A rise of `limited` is someone guessing.
CONSOLE_SIGN_INS = Counter(
    "pimhub_console_sign_ins", "Password sign-ins to the console by outcome", ["outcome"]
)

# Every stage counts what it sets aside (invalid or dead-letter topic, or a recorded row)
# instead of processing: stage is the service, reason a short bounded code (too_large,
# too_deep, control_character, bad_version, ...), never the free-text message.
RECORDS_SET_ASIDE = Counter(
    "pimhub_records_set_aside",
    "Records a stage could not process and set aside with their reason, by stage and reason",
    ["stage", "reason"],
)

# ---- ingest: webhook receiver ---------------------------------------------------------------
# The receiver keeps its counters in a registry per app (src/pim_hub/services/ingest/web.py `Metrics`, so
# tests can build many apps) and `expose()`s it here: pimhub_ingest_webhook_requests_total
# {endpoint, outcome}, pimhub_ingest_webhook_seconds{endpoint}, pimhub_ingest_webhook_events_total
# {endpoint, outcome}, pimhub_ingest_events_total{endpoint, event_type},
# pimhub_ingest_signature_failures_total{endpoint}.

# ---- ingest: enricher and REST sync --------------------------------------------------------

SYNC_ITEMS = Counter(
    "pimhub_sync_items",
    "Entities the REST sync published as snapshots, by entity type",
    ["entity_type"],
)
SYNC_INVALID = Counter(
    "pimhub_sync_invalid_items", "Entities the REST sync could not publish", ["entity_type"]
)
AKENEO_CALLS = Counter(
    "pimhub_akeneo_calls",
    "Calls to the Akeneo REST API by HTTP status (or error kind: timeout, connection)",
    ["status"],
)
AKENEO_RATE_LIMITED = Counter("pimhub_akeneo_rate_limited", "Akeneo answers 429 Too Many Requests")
AKENEO_SECONDS = Histogram(
    "pimhub_akeneo_call_seconds", "Duration of Akeneo REST calls", buckets=FAST_BUCKETS
)

# ---- mutator and fan-out --------------------------------------------------------------------

MUTATOR_SNAPSHOTS = Counter(
    "pimhub_mutator_snapshots",
    "Snapshots processed by entity type and outcome (mutation, noop, stale, duplicate, invalid)",
    ["entity_type", "outcome"],
)
MUTATOR_MUTATIONS = Counter(
    "pimhub_mutator_mutations",
    "Mutations emitted by entity type and operation (create, update, delete)",
    ["entity_type", "operation"],
)
MUTATOR_BATCH_SECONDS = Histogram(
    "pimhub_mutator_batch_seconds",
    "Time to diff a batch of snapshots and have its mutations acknowledged",
    buckets=FAST_BUCKETS,
)
MUTATOR_BATCHES = Counter(
    "pimhub_mutator_batches",
    "Batches an agent handled: live and bulk snapshots, mutations (fan-out)",
    ["agent"],
)
MUTATOR_BATCH_RECORDS = Counter(
    "pimhub_mutator_batch_records",
    "Records in the batches an agent handled (divided by pimhub_mutator_batches: batch size)",
    ["agent"],
)
MUTATOR_BULK_YIELDS = Counter(
    "pimhub_mutator_bulk_yields",
    "Times a bulk snapshot batch gave way to a live batch: waited for it, or stopped after "
    "the snapshot in hand to let it in (live before bulk)",
)
MUTATOR_IN_FLIGHT_WAITS = Counter(
    "pimhub_mutator_in_flight_waits",
    "Snapshots decided again after waiting for another batch (live or bulk) that had sent a "
    "mutation of the same entity and not yet written its state",
    ["kind"],
)
MUTATOR_LATENCY = Histogram(
    "pimhub_mutator_latency_seconds",
    "From a snapshot's received time to its mutation acknowledged, by entity type",
    ["entity_type"],
    buckets=LATENCY_BUCKETS,
)
FANOUT_JOBS = Counter(
    "pimhub_fanout_jobs",
    "Jobs fanned out by integration, driver and priority",
    ["integration", "driver", "priority"],
)
FANOUT_UNDECODABLE = Counter(
    "pimhub_fanout_undecodable_mutations", "Mutations the fan-out could not decode"
)

# ---- dispatcher -----------------------------------------------------------------------------

DISPATCH_JOBS = Counter(
    "pimhub_dispatcher_jobs",
    "Jobs finished by driver, integration, priority and outcome "
    "(delivered, skipped, retrying, dead)",
    ["driver", "integration", "priority", "outcome"],
)
DISPATCH_SECONDS = Histogram(
    "pimhub_dispatcher_delivery_seconds",
    "Time to deliver one job (its share of a batch, observed once per batch), by driver, "
    "integration and priority",
    ["driver", "integration", "priority"],
    buckets=FAST_BUCKETS,
)
DISPATCH_RETRIES = Counter(
    "pimhub_dispatcher_retries",
    "Jobs sent to a retry topic, by driver, integration and priority",
    ["driver", "integration", "priority"],
)
DISPATCH_DEAD_LETTERS = Counter(
    "pimhub_dispatcher_dead_letters",
    "Jobs sent to the dead-letter topic, by driver, integration, priority and error kind",
    ["driver", "integration", "priority", "error_kind"],
)
DISPATCH_IN_FLIGHT = Gauge(
    "pimhub_dispatcher_in_flight",
    "Jobs being delivered right now, by driver and priority",
    ["driver", "priority"],
)
DISPATCH_PARTITIONS = Gauge(
    "pimhub_dispatcher_partitions",
    "Partitions of the jobs and retry topics this process holds, by driver and priority "
    "(0 until its consumer group has assigned it some)",
    ["driver", "priority"],
)
DISPATCH_RATE_LIMIT_WAIT = Histogram(
    "pimhub_dispatcher_rate_limit_wait_seconds",
    "Waits for an integration's requests-per-second limit (count = waits, sum = time waited)",
    ["driver", "integration"],
    buckets=FAST_BUCKETS,
)
# Per-entity order across priority lanes and the circuit breaker of each integration.
DISPATCH_HELD = Counter(
    "pimhub_dispatcher_held",
    "Times a job was held back without spending an attempt, by driver, integration, priority "
    "and reason (order: an older job of its entity pending in another lane, or not read yet; circuit: its "
    "target is down; throttle: its target answered 429; guard: the version guard's database "
    "is away; parked: its circuit is open and the buffer was full, so it went to the longest "
    "retry tier until the circuit closes)",
    ["driver", "integration", "priority", "reason"],
)
DISPATCH_ORDER_GIVEN_UP = Counter(
    "pimhub_dispatcher_order_given_up",
    "Jobs delivered without waiting any longer for the older job of their entity they name "
    "(it did not finish within HUB_DISPATCHER_ORDER_HOLD_S: its lane is far behind or has no "
    "dispatcher), by driver, integration and priority",
    ["driver", "integration", "priority"],
)
DISPATCH_CIRCUIT = Gauge(
    "pimhub_dispatcher_circuit_state",
    "Circuit breaker of each integration's target: 0 closed, 1 half-open (probing), 2 open "
    "(jobs wait), by driver, integration and priority",
    ["driver", "integration", "priority"],
)
DISPATCH_CIRCUIT_OPENED = Gauge(
    "pimhub_dispatcher_circuit_opened_timestamp_seconds",
    "When the circuit of an integration's target opened (Unix time; 0 while closed), by "
    "driver, integration and priority",
    ["driver", "integration", "priority"],
)
DISPATCH_OUTAGE_CEILING = Gauge(
    "pimhub_dispatcher_outage_ceiling_seconds",
    "How long an outage holds an integration's jobs at most (HUB_DISPATCHER_OUTAGE_CEILING_S; "
    "then they go through the retry tiers to the dead-letter topic; 0: no limit), by driver, "
    "integration and priority",
    ["driver", "integration", "priority"],
)
DISPATCH_CONCURRENCY = Gauge(
    "pimhub_dispatcher_concurrency_limit",
    "Driver calls an integration may have in flight now: its configured concurrency, lowered "
    "while its target throttles (429, slow answers) and raised again one by one (AIMD), by "
    "driver, integration and priority",
    ["driver", "integration", "priority"],
)
TARGET_CALLS = Counter(
    "pimhub_target_calls",
    "Calls drivers made to their targets, by driver, integration and HTTP status or error kind",
    ["driver", "integration", "status"],
)
END_TO_END = Histogram(
    "pimhub_end_to_end_seconds",
    "From the source event received by the hub to its delivery, by priority and integration",
    ["priority", "integration"],
    buckets=LATENCY_BUCKETS,
)

# ---- projector ------------------------------------------------------------------------------

PROJECTOR_STATUSES = Counter(
    "pimhub_projector_statuses", "Delivery statuses projected into PostgreSQL", ["status"]
)


class TargetCalls:
    """The drivers' `Metrics` (src/pim_hub/drivers/base.py) for one integration: counts target calls."""

    def __init__(self, driver: str, integration: str) -> None:
        self.driver = driver
        self.integration = integration

    def target_call(self, status: int | str) -> None:
        """Count one call to the target by status code (or an error kind)."""
        TARGET_CALLS.labels(self.driver, self.integration, str(status)).inc()


def observe_mutations(
    mutations: Iterable[dict[str, Any] | None], now: datetime | None = None
) -> None:
    """Count acknowledged mutation records and their latency since the snapshot was received."""
    now = now or datetime.now(UTC)
    for m in mutations:
        if m is None:
            continue
        MUTATOR_MUTATIONS.labels(m["entity_type"], m["operation"]).inc()
        received = m.get("source_received_at")
        if isinstance(received, datetime):
            if received.tzinfo is None:
                received = received.replace(tzinfo=UTC)
            latency = max(0.0, (now - received).total_seconds())
            MUTATOR_LATENCY.labels(m["entity_type"]).observe(latency)


class JobSeries:
    """The dispatcher's metric series of one driver, integration, priority, status and error kind.

    `labels()` costs more than an observation: the children are looked up once. Jobs are
    counted once per batch (`count`); only the end-to-end latency differs from job to job
    (`observe`), and the batch's latencies go into the histogram together when it is counted.
    """

    __slots__ = ("end_to_end", "extra", "jobs", "latencies", "seconds")

    def __init__(
        self, driver: str, integration: str, priority: str, status: str, kind: str | None
    ) -> None:
        self.jobs = DISPATCH_JOBS.labels(driver, integration, priority, status)
        self.seconds = DISPATCH_SECONDS.labels(driver, integration, priority)
        self.extra: Any = None
        if status == "retrying":
            self.extra = DISPATCH_RETRIES.labels(driver, integration, priority)
        elif status == "dead":
            self.extra = DISPATCH_DEAD_LETTERS.labels(
                driver, integration, priority, kind or "failed"
            )
        self.end_to_end = (
            END_TO_END.labels(priority, integration) if status == "delivered" else None
        )
        self.latencies: list[float] = []  # observed, not yet in the histogram

    def count(self, jobs: int, seconds: float) -> None:
        """`jobs` of one batch finished, each taking `seconds` (its share of the batch).

        The delivery time is observed once per batch: every job of it has the same share.
        """
        self.jobs.inc(jobs)
        self.seconds.observe(seconds)
        if self.extra is not None:
            self.extra.inc(jobs)
        if self.latencies:
            observe_all(self.end_to_end, self.latencies)
            self.latencies = []

    def observe(self, received_at: datetime | None, now: datetime) -> None:
        """One job finished: the time from its source event reaching the hub, if delivered.

        Kept until the batch is counted (`count`).
        """
        if self.end_to_end is not None and received_at is not None:
            if received_at.tzinfo is None:
                received_at = received_at.replace(tzinfo=UTC)
            # A clock step between hosts can make it negative; it still happened.
            self.latencies.append(max(0.0, (now - received_at).total_seconds()))


def observe_all(histogram: Any, values: list[float]) -> None:
    """`histogram.observe(v)` for each value, with one update per bucket touched.

    Each observation takes the histogram's locks twice and walks its bounds: about 1.5 us,
    a few per cent of a no-op dispatcher's job. This reads prometheus_client's own fields
    (the child's bounds, buckets and sum); a histogram without them is observed one by one.
    """
    try:
        bounds, buckets, total = histogram._upper_bounds, histogram._buckets, histogram._sum
    except AttributeError:
        for v in values:
            histogram.observe(v)
        return
    counts = [0] * len(bounds)
    for v in values:
        # observe() counts a value in the first bucket whose bound is >= it (the last is +Inf).
        counts[bisect_left(bounds, v)] += 1
    total.inc(sum(values))
    for i, k in enumerate(counts):
        if k:
            buckets[i].inc(k)


# ---- serving ---------------------------------------------------------------------------------


class MetricsSettings(BaseSettings):
    """Where a service serves /metrics (HUB_METRICS_PORT; unset: not served)."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore", frozen=True)

    #: HUB_METRICS_PORT; 0 picks a free port (tests).
    metrics_port: int | None = None
    #: HUB_METRICS_HOST; all interfaces by default, since Prometheus scrapes from outside.
    metrics_host: str = "0.0.0.0"  # noqa: S104


class _Served(CollectorRegistry):
    """The default registry plus registries that apps create for themselves (ingest web)."""

    def __init__(self) -> None:
        super().__init__(auto_describe=False)
        self.extra: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for registry in (REGISTRY, *list(self.extra)):
            for metric in registry.collect():
                # Two registries may both hold a name; the first one wins, never a duplicate.
                if metric.name not in seen:
                    seen.add(metric.name)
                    yield metric


SERVED = _Served()
_lock = threading.Lock()
_servers: dict[int, Any] = {}


def expose(registry: CollectorRegistry) -> None:
    """Serve an app's own registry on /metrics as well (kept only while the app lives)."""
    SERVED.extra.add(registry)


def _app(metrics_app: Any, health: Health) -> Any:
    """/healthz and /readyz from `health`; everything else is /metrics."""
    import json

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            answer = health.liveness() if path == "/healthz" else health.readiness()
            status = "200 OK" if answer["status"] == "ok" else "503 Service Unavailable"
            body = json.dumps(answer).encode()
            start_response(
                status,
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return list(metrics_app(environ, start_response))

    return app


def serve_metrics(
    port: int,
    host: str = "0.0.0.0",  # noqa: S104 - scraped from outside
    health: Health = HEALTH,
) -> int:
    """Serve /metrics, /healthz and /readyz on a port in a daemon thread (once per port);
    returns the bound port."""
    from wsgiref.simple_server import make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import (
        ThreadingWSGIServer,
        _SilentHandler,
    )

    with _lock:
        if port in _servers and port != 0:
            return port
        server = make_server(
            host,
            port,
            _app(make_wsgi_app(SERVED), health),
            ThreadingWSGIServer,
            handler_class=_SilentHandler,
        )
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        bound = int(server.server_port)
        _servers[bound] = server
        return bound


def start_from_env(
    service: str,
    settings: MetricsSettings | None = None,
    *,
    kafka: dict[str, Any] | None = None,
    database_url: str | None = None,
    group: str | None = None,
) -> int | None:
    """Mark this process as `service` and serve /metrics, /healthz and /readyz when
    HUB_METRICS_PORT is set.

    `kafka` (a client configuration) and `database_url` make /readyz check that the broker
    and PostgreSQL answer; with `group`, /readyz waits until that consumer group assigns
    this process (the service reports it: `HEALTH.set("assigned", ...)`). The service's loops
    report their own progress (`runtime.health`).
    """
    settings = settings or MetricsSettings()
    SERVICE_INFO.labels(service).set(1)
    HEALTH.service = service
    # Spans go out over OTLP when an endpoint is configured (runtime.tracing); else none.
    tracing.configure(service)
    if kafka is not None:
        HEALTH.check("broker", broker_check(kafka))
    if database_url is not None:
        HEALTH.check("database", database_check(database_url))
    if group is not None:
        HEALTH.set("assigned", False, f"waiting for consumer group {group}")
    if settings.metrics_port is None:
        return None
    port = serve_metrics(settings.metrics_port, settings.metrics_host)
    logger.info("metrics served", extra={"service": service, "port": port})
    return port


def metric_names(registry: CollectorRegistry = REGISTRY) -> Iterable[tuple[str, str, list[str]]]:
    """(name, type, label names) of the hub's own metrics, for checks and docs."""
    for collector in list(registry._collector_to_names):
        name = getattr(collector, "_name", "")
        if name.startswith("pimhub_"):
            yield name, collector._type, list(collector._labelnames)  # type: ignore[attr-defined]


def observe_batch(agent: str, records: int) -> None:
    """Count one batch of `records` an agent of the mutator handled."""
    MUTATOR_BATCHES.labels(agent).inc()
    MUTATOR_BATCH_RECORDS.labels(agent).inc(records)
