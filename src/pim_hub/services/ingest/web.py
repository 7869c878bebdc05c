"""Webhook receiver (ASGI): Akeneo Events API and Event Platform deliveries to pim.raw-events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pim_hub.runtime import health, tracing
from pim_hub.runtime import metrics as hub_metrics
from pim_hub.runtime.kafka import AsyncProducer, DeliveryFailed, make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.runtime.tuning import quiet_gc
from pim_hub.schemas.errors import RetryableError
from pim_hub.schemas.limits import (
    DEFAULT_MESSAGE_MAX_BYTES,
    LimitExceeded,
    check_depth,
    record_budget,
)
from pim_hub.schemas.topics import RAW_EVENTS
from pim_hub.services.ingest.dedupe import SeenIds
from pim_hub.services.ingest.events import (
    EP_NOUNS,
    EP_PREFIX,
    EVENT_PLATFORM,
    EVENTS_API,
    H_EVENT_ID,
    H_IGNORED,
    H_RECEIVED,
    H_SOURCE,
    LEGACY_NOUNS,
    InvalidEvent,
    Json,
    Plan,
    check_event_platform_body,
    check_legacy_body,
    event_id_of,
    plan_cloud_event,
    plan_legacy,
)
from pim_hub.services.ingest.server import READ_AT
from pim_hub.services.ingest.settings import IngestSettings
from pim_hub.services.ingest.signatures import BadSignature, verify_event_platform, verify_legacy

logger = logging.getLogger(__name__)

EVENTS_API_PATH = "/webhooks/akeneo/events-api"
EVENT_PLATFORM_PATH = "/webhooks/akeneo/event-platform"
LEGACY_SIGNATURE = "x-akeneo-request-signature"
LEGACY_TIMESTAMP = "x-akeneo-request-timestamp"
EP_PRIMARY = "x-akeneo-signature-primary"
EP_SECONDARY = "x-akeneo-signature-secondary"


@dataclass(frozen=True)
class RawRecord:
    """One record for pim.raw-events: an event's own JSON, keyed by its entity."""

    key: str | None
    value: bytes
    headers: list[tuple[str, str | bytes | None]]


class Backpressure(RetryableError):
    """The producer queue is full: the caller should slow down (429)."""


class PublishFailed(RetryableError):
    """The broker did not acknowledge in time or refused the write (503)."""


class Publisher(Protocol):
    """Writes raw records and returns only once the broker acknowledged all of them."""

    async def publish(self, records: Sequence[RawRecord]) -> None:
        """Raises Backpressure or PublishFailed."""
        ...


class KafkaPublisher:
    """Publisher over the idempotent acks=all producer, rebuilt after a fatal error.

    An idempotent producer's fatal errors (`UNKNOWN_PRODUCER_ID` after a broker lost its
    state, `PRODUCER_FENCED` after a long freeze) are final for that producer: every later
    write fails. With `rebuild`, the publisher replaces it, answering 503 meanwhile (Akeneo
    retries); `healthy` is False until a new producer runs, and the metrics port's /readyz
    reports it. A producer that is stuck without a fatal error (no write acknowledged for
    `stall_s`, by default twice the write timeout) is replaced too (see `_failed`).
    """

    def __init__(
        self,
        producer: AsyncProducer,
        *,
        topic: str = RAW_EVENTS,
        max_queued: int = 20_000,
        timeout_s: float = 4.0,
        rebuild: Callable[[], AsyncProducer] | None = None,
        stall_s: float | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.max_queued = max_queued
        self.timeout_s = timeout_s
        self._rebuild = rebuild
        self.healthy = True
        self._recovering: asyncio.Task[None] | None = None
        # Writes not acknowledged since the last one that was, and since when.
        self.stall_s = stall_s if stall_s is not None else max(2 * timeout_s, 5.0)
        self._failures = 0
        self._failing_since: float | None = None

    async def start(self, warm_up_s: float = 10.0) -> None:
        """Start the producer's delivery thread and connect it to the topic's leaders.

        The first write otherwise pays for the connections and the topic's metadata, and
        the legacy Events API's answer has only half a second. A broker that does not answer
        yet is not fatal here: requests get 503 until it does.
        """
        await self.producer.start()
        try:
            await asyncio.to_thread(self.producer.producer.list_topics, self.topic, warm_up_s)
        except KafkaException as exc:
            logger.warning(
                "broker not reachable at start; webhooks get 503 until it is",
                extra={"topic": self.topic, "error": str(exc)},
            )

    async def close(self) -> None:
        """Deliver what is queued and stop."""
        if self._recovering is not None:
            await asyncio.gather(self._recovering, return_exceptions=True)
        await self.producer.close()

    async def publish(self, records: Sequence[RawRecord]) -> None:
        """Queue every record, then wait until the broker acknowledged each one."""
        if not self.healthy:
            self._recover()  # a rebuild that failed before is tried again
            raise PublishFailed("producer being rebuilt after a fatal error")
        started = time.monotonic()
        try:
            await self._send(records)
        except BaseException:
            # Cancelled too: the Events API's budget cancels a write that did not finish.
            self._failed(started)
            raise
        self._failures, self._failing_since = 0, None

    def _failed(self, started: float) -> None:
        """Count a write that was not acknowledged; rebuild a producer that is stuck.

        A producer can fail every write without a fatal error: after its broker restarted
        empty (memory storage, a wiped cluster), librdkafka answers UNKNOWN_PRODUCER_ID by
        bumping the epoch of a producer id the broker never knew, forever, and each record
        times out. When no write was acknowledged for `stall_s` over several attempts, a
        new producer (which asks the broker for a new id) replaces it in the background;
        the old one serves meanwhile, in case the broker was only slow.
        """
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = started
        stalled_s = time.monotonic() - self._failing_since
        if self._rebuild is None or self._failures < 3 or stalled_s < self.stall_s:
            return
        if self._recovering is not None and not self._recovering.done():
            return
        logger.error(
            "producer stalled; rebuilding it",
            extra={"failed_writes": self._failures, "stalled_s": round(stalled_s, 1)},
        )
        health.HEALTH.set("producer", False, f"no acknowledgement for {stalled_s:.0f} s")
        self._recover()

    async def _send(self, records: Sequence[RawRecord]) -> None:
        if len(self.producer.producer) + len(records) > self.max_queued:
            raise Backpressure("producer queue full")
        futures = []
        try:
            for r in records:
                futures.append(self.producer.send_nowait(self.topic, r.value, r.key, r.headers))
        except BufferError as exc:
            raise Backpressure("producer queue full") from exc
        except KafkaException as exc:
            self._check_fatal(exc.args[0] if exc.args else None)
            raise PublishFailed(str(exc)) from exc
        try:
            acknowledged = asyncio.gather(*futures)
            # Cancelled by the Events API's budget, the gather may still end with an error
            # nobody awaits: retrieve it, or asyncio logs "exception was never retrieved".
            acknowledged.add_done_callback(_retrieve)
            await asyncio.wait_for(acknowledged, self.timeout_s)
        except TimeoutError as exc:
            raise PublishFailed("broker did not acknowledge in time") from exc
        except DeliveryFailed as exc:
            self._check_fatal(exc.error)
            raise PublishFailed(str(exc)) from exc

    def _check_fatal(self, error: object) -> None:
        if isinstance(error, KafkaError) and (error.fatal() or error.code() == KafkaError._FATAL):
            logger.error("producer fatal error; rebuilding it", extra={"error": str(error)})
            self.healthy = False
            # /readyz on the metrics port (not the public webhook port) reports it too.
            health.HEALTH.set("producer", False, "rebuilding after a fatal error")
            self._recover()

    def _recover(self) -> None:
        if self._rebuild is None or (self._recovering is not None and not self._recovering.done()):
            return
        self._recovering = asyncio.get_running_loop().create_task(self._replace())

    async def _replace(self) -> None:
        assert self._rebuild is not None
        old = self.producer
        try:
            fresh = self._rebuild()
            await fresh.start()
        except Exception as exc:
            logger.error("cannot rebuild the producer", extra={"error": str(exc)})
            return
        self.producer = fresh
        self.healthy = True
        self._failures, self._failing_since = 0, None
        health.HEALTH.set("producer", True, "rebuilt")
        logger.info("producer rebuilt")
        try:
            # Its records can no longer be delivered: their requests were already answered 503.
            await old.close(timeout=0)
        except Exception as exc:
            logger.warning("closing the failed producer", extra={"error": str(exc)})


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen (its caller already answered the request)."""
    if not future.cancelled():
        future.exception()


@dataclass
class Metrics:
    """Counters of the receiver, in a registry of its own (one per app)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "pimhub_ingest_webhook_requests",
            "Webhook requests by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "pimhub_ingest_webhook_events",
            "Webhook events by endpoint and outcome (published, duplicate, ignored)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pimhub_ingest_webhook_seconds",
            "Time to answer a webhook",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.waited = Histogram(
            "pimhub_ingest_webhook_wait_seconds",
            "Time from reading a webhook's request head to its handler starting (the process's "
            "event loop was busy, or waited for a core)",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.signature_failures = Counter(
            "pimhub_ingest_signature_failures",
            "Webhook requests refused for a missing, wrong or expired signature",
            ["endpoint"],
            registry=self.registry,
        )
        self.event_types = Counter(
            "pimhub_ingest_events",
            "Akeneo events received by endpoint and event type",
            ["endpoint", "event_type"],
            registry=self.registry,
        )

    def value(self, metric: str, **labels: str) -> float:
        """Current value of a counter sample (tests and the benchmark)."""
        metric = metric if metric.startswith("pimhub_") else f"pim{metric}"  # the old names
        return self.registry.get_sample_value(f"{metric}_total", labels) or 0.0


class _Reject(Exception):
    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason


def _json(status: int, body: Json) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Reject(413, "too_large", f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        # A client that trickles its body must not hold the connection (and a worker slot).
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _Reject(413, "too_large", f"body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise _Reject(408, "timeout", f"body not received within {timeout_s:g} s") from exc
    return b"".join(chunks)


#: The event types counted by name in pimhub_ingest_events_total; any other is `other`, so a
#: sender cannot add label series at will.
KNOWN_EVENT_TYPES: frozenset[str] = frozenset(
    [f"{noun}.{verb}" for noun in LEGACY_NOUNS for verb in ("created", "updated", "removed")]
    + [
        f"{EP_PREFIX}{noun}.{verb}"
        for noun in EP_NOUNS
        for verb in ("created", "updated", "deleted", "updated.delta")
    ]
)


def event_type_label(event: Json) -> str:
    """The bounded metric label of an event's type."""
    name = event.get("action") or event.get("type")
    return name if isinstance(name, str) and name in KNOWN_EVENT_TYPES else "other"


def create_app(
    ingest: IngestSettings,
    publisher: Publisher,
    *,
    clock: Callable[[], float] = time.time,
    lifespan: Callable[[Starlette], Any] | None = None,
    message_max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
    handled: Callable[[Sequence[str]], Awaitable[set[str]]] | None = None,
) -> Starlette:
    """The receiver app. State for tests: `app.state.metrics`, `app.state.seen`.

    Args:
        ingest: secrets, limits and the authors to ignore.
        publisher: where raw records go; a request is answered 2xx only after it returned.
        clock: seconds clock for the timestamp window.
        lifespan: starts and stops the publisher when served by uvicorn.
        message_max_bytes: the brokers' record limit (HUB_KAFKA__MESSAGE_MAX_BYTES); an event
            whose mutation could not be written is refused at the door.
        handled: which of some event ids were handled before (the enricher's record in
            PostgreSQL): a request replayed after a restart is answered as duplicates.
    """
    # A mutation carries each value twice (its change and the state): half the budget.
    max_event = ingest.max_event_bytes or record_budget(message_max_bytes) // 2
    metrics = Metrics()
    hub_metrics.expose(metrics.registry)  # also on HUB_METRICS_PORT
    seen = SeenIds(ingest.dedupe_size)
    own = ingest.own_authors()
    legacy_secrets = [
        s.get_secret_value()
        for s in (ingest.events_api_secret, ingest.events_api_secret_previous)
        if s is not None and s.get_secret_value()
    ]
    ep_secrets = [
        s.get_secret_value()
        for s in (ingest.event_platform_secret_primary, ingest.event_platform_secret_secondary)
        if s is not None and s.get_secret_value()
    ]
    if not legacy_secrets:
        logger.warning("no Events API secret configured: its endpoint answers 401 to everything")
    if not ep_secrets:
        logger.warning("no Event Platform secret configured: its endpoint answers 401")

    def authenticate(kind: str, request: Request, body: bytes) -> None:
        headers = request.headers
        if kind == EVENTS_API:
            verify_legacy(
                legacy_secrets,
                headers.get(LEGACY_SIGNATURE),
                headers.get(LEGACY_TIMESTAMP),
                body,
                clock(),
                ingest.timestamp_tolerance_s,
            )
        else:
            verify_event_platform(
                ep_secrets, (headers.get(EP_PRIMARY), headers.get(EP_SECONDARY)), body
            )

    def not_stored(kind: str, records: Sequence[RawRecord], error: str) -> None:
        # The trace of events Akeneo may not send again (the Events API never retries):
        # their ids and keys in the log, their number in the metrics; no payloads.
        metrics.events.labels(kind, "not_stored").inc(len(records))
        logger.error(
            "webhook events not stored",
            extra={
                "endpoint": kind,
                "error": error,
                "event_ids": [dict(r.headers).get(H_EVENT_ID) for r in records],
                "keys": [r.key for r in records],
            },
        )

    def plan_all(kind: str, parsed: Any) -> list[tuple[Json, Plan]]:
        if kind == EVENTS_API:
            events = check_legacy_body(parsed)
            return [(e, plan_legacy(e, own)) for e in events]
        return [(e, plan_cloud_event(e, own)) for e in check_event_platform_body(parsed)]

    async def handle(kind: str, request: Request) -> Response:
        started = time.perf_counter()
        read_at = request.scope.get(READ_AT)
        if read_at is not None:  # served by `server.config` (not by a test client)
            metrics.waited.labels(kind).observe(max(started - read_at, 0.0))
        try:
            body = await _read_body(request, ingest.max_body_bytes, ingest.body_timeout_s)
            try:
                authenticate(kind, request, body)
            except BadSignature as exc:
                metrics.signature_failures.labels(kind).inc()
                raise _Reject(401, "bad_signature", str(exc)) from exc
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise _Reject(400, "not_json", "body is not JSON") from exc
            try:
                # orjson reads 1,024 levels but writes 254: each event is written again below.
                check_depth("body", parsed)
            except LimitExceeded as exc:
                raise _Reject(400, "too_deep", str(exc)) from exc
            try:
                planned = plan_all(kind, parsed)
            except InvalidEvent as exc:
                raise _Reject(422, "invalid", str(exc)) from exc
            received = str(int(clock() * 1000))
            records: list[RawRecord] = []
            ids: list[str] = []
            duplicates = ignored = 0
            # Replays across restarts: ids the enricher already handled (PostgreSQL), asked
            # only for those this process has not seen.
            handled_before: set[str] = set()
            if handled is not None:
                fresh = [i for i in (event_id_of(kind, e) for e, _ in planned) if i not in seen]
                handled_before = await handled(fresh) if fresh else set()
            for index, (event, plan) in enumerate(planned):
                metrics.event_types.labels(kind, event_type_label(event)).inc()
                value = orjson.dumps(event)
                if len(value) > max_event:
                    raise _Reject(
                        413,
                        "event_too_large",
                        f"event {index} is {len(value)} bytes; at most {max_event} are accepted",
                    )
                event_id = event_id_of(kind, event)
                if event_id in seen or event_id in ids or event_id in handled_before:
                    duplicates += 1
                    continue
                headers: list[tuple[str, str | bytes | None]] = [
                    (H_SOURCE, kind),
                    (H_RECEIVED, received),
                    (H_EVENT_ID, event_id),
                ]
                if plan.action == "ignore":
                    # Kept on the raw topic (flagged) so nothing Akeneo said disappears.
                    headers.append((H_IGNORED, plan.reason))
                    ignored += 1
                ids.append(event_id)
                # Each event starts its trace here (or continues the request's traceparent).
                with tracing.stage(
                    "ingest.webhook",
                    {k: request.headers.get(k) for k in tracing.TRACE_HEADERS},
                    {"event_id": event_id, "entity_key": plan.entity_key, "endpoint": kind},
                    kind=tracing.SpanKind.SERVER,
                ) as trace_headers:
                    headers += trace_headers
                records.append(RawRecord(plan.entity_key, value, headers))
            if records:
                # The legacy Events API gives up after 0.5 s and never retries: answer within
                # its budget, so the failure is at least ours to see and count.
                budget = ingest.events_api_budget_s if kind == EVENTS_API else None
                try:
                    await asyncio.wait_for(publisher.publish(records), budget)
                except Backpressure as exc:
                    not_stored(kind, records, "backpressure")
                    raise _Reject(429, "backpressure", str(exc)) from exc
                except (PublishFailed, TimeoutError) as exc:
                    # The broker's own error text stays in the log, not in the answer.
                    not_stored(kind, records, str(exc) or "no acknowledgement within the budget")
                    raise _Reject(503, "broker_error", "not stored; try again") from exc
            # Remember ids only once acknowledged: a failed write must not hide the retry.
            for event_id in ids:
                seen.add(event_id)
        except _Reject as rej:
            metrics.requests.labels(kind, rej.outcome).inc()
            logger.warning(
                "webhook rejected",
                extra={"endpoint": kind, "status": rej.status, "reason": rej.reason},
            )
            response = _json(rej.status, {"error": rej.reason})
            if rej.status in (429, 503):
                response.headers["Retry-After"] = "1"
            return response
        except Exception:
            # A bug, not the sender's fault: answered and counted, never a silent 500.
            metrics.requests.labels(kind, "internal_error").inc()
            logger.exception("webhook failed", extra={"endpoint": kind})
            return _json(500, {"error": "internal error"})
        finally:
            metrics.latency.labels(kind).observe(time.perf_counter() - started)
        metrics.requests.labels(kind, "accepted").inc()
        published = len(records) - ignored
        metrics.events.labels(kind, "published").inc(published)
        metrics.events.labels(kind, "ignored").inc(ignored)
        metrics.events.labels(kind, "duplicate").inc(duplicates)
        return _json(200, {"accepted": published, "ignored": ignored, "duplicates": duplicates})

    async def events_api(request: Request) -> Response:
        return await handle(EVENTS_API, request)

    async def event_platform(request: Request) -> Response:
        return await handle(EVENT_PLATFORM, request)

    async def anywhere(request: Request) -> Response:
        # Akeneo suspends a subscription on any 404 or 3xx: a signed request on a path we do
        # not expect (a stray slash, an old URL) is served by the endpoint its headers name.
        headers = request.headers
        if request.url.path in (EVENTS_API_PATH, EVENT_PLATFORM_PATH):
            response = _json(405, {"error": "method not allowed; webhooks are POSTed"})
            response.headers["Allow"] = "POST"
            return response
        if request.method == "POST" and LEGACY_SIGNATURE in headers:
            return await handle(EVENTS_API, request)
        if request.method == "POST" and (EP_PRIMARY in headers or EP_SECONDARY in headers):
            return await handle(EVENT_PLATFORM, request)
        return _json(404, {"error": "not found"})

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # No /healthz or /readyz here: the public port answers them 404. Probes ask the metrics
    # port (HUB_METRICS_PORT, runtime.health), where liveness follows this event loop and
    # readiness the broker and the producer, and which is never exposed to the internet.
    routes = [
        Route(EVENTS_API_PATH, events_api, methods=["POST"]),
        Route(EVENT_PLATFORM_PATH, event_platform, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/{path:path}", anywhere, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.router.redirect_slashes = False
    app.state.metrics = metrics
    app.state.seen = seen
    return app


def kafka_app(settings: Settings, ingest: IngestSettings) -> Starlette:
    """The receiver writing to pim.raw-events with the idempotent acks=all producer."""

    # A request waits for its own acknowledgement, so nothing is gained by lingering: its
    # records leave at once (librdkafka still batches what queued up while a request was in
    # flight), and the poll thread hands the acknowledgement over as soon as it arrives.
    def new_producer() -> AsyncProducer:
        return AsyncProducer(
            make_producer(
                settings,
                **{
                    "linger.ms": 0,
                    "queue.buffering.max.messages": max(ingest.max_queued * 2, 1000),
                    "message.timeout.ms": int(ingest.publish_timeout_s * 1000) + 1000,
                },
            )
        )

    publisher = KafkaPublisher(
        new_producer(),
        max_queued=ingest.max_queued,
        timeout_s=ingest.publish_timeout_s,
        rebuild=new_producer,
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await publisher.start()
        quiet_gc()  # collector pauses show up in the latency tail
        unwatch = health.watch_event_loop()  # /healthz fails when a request blocks the loop
        try:
            yield
        finally:
            unwatch()
            await publisher.close()

    return create_app(
        ingest, publisher, lifespan=lifespan, message_max_bytes=settings.kafka.message_max_bytes
    )
