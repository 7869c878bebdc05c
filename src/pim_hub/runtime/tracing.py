"""Tracing with OpenTelemetry: one product's path, from the webhook to the target's request.

The W3C trace context (`traceparent`, `tracestate`) travels in Kafka record headers: the
receiver (or the sync, or an outside producer that sets it) starts it, and every stage copies
it from the record it read onto the records it writes (raw event → snapshot → mutation → job
→ retry jobs, dead letter and delivery status), then onto the driver's HTTP request.

- With an exporter configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, and `pip install 'pim-hub[otel]'`), each stage records
  a span per record, with the stable keys (`entity_key`, `event_id`, `job_id`, `integration`)
  as attributes, exported over OTLP/HTTP.
- Without one, nothing is recorded or exported, and the headers still pass through unchanged:
  a downstream process that does export continues the upstream trace.

Only `opentelemetry-api` is a runtime dependency; the SDK and exporter are the `otel` extra.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

__all__ = ["SpanKind", "batch_stage", "carrier", "configure", "stage", "trace_id", "use"]
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The record headers that carry the trace context (W3C Trace Context names).
TRACE_HEADERS = (TRACEPARENT, TRACESTATE)

#: Kafka headers as the clients give and take them.
RecordHeaders = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None]
#: The trace headers a stage writes on its records (empty when there is no trace); typed as
#: the Kafka clients take headers, the values are always bytes.
TraceHeaders = list[tuple[str, str | bytes | None]]

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER_NAME = "pim_hub"
#: The tracer spans are recorded with; None: tracing is off (headers only pass through).
_tracer: Any = None


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables the hub reads (no HUB_ prefix)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    sdk_disabled: bool = Field(default=False, validation_alias=AliasChoices("OTEL_SDK_DISABLED"))
    service_name: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_SERVICE_NAME")
    )

    @property
    def exporting(self) -> bool:
        """Whether spans are to be exported."""
        return bool(self.otlp_endpoint or self.otlp_traces_endpoint) and not self.sdk_disabled


def enabled() -> bool:
    """Whether this process records spans (a provider is in use)."""
    return _tracer is not None


def use(provider: Any | None) -> None:
    """Record spans with `provider` (an SDK TracerProvider: OTLP export, or the tests'
    in-memory one); None stops recording. The hub's own tracer, not the global provider, so
    a test can turn it on and off."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer(_TRACER_NAME)


def configure(service: str, settings: TracingSettings | None = None) -> bool:
    """Export spans over OTLP/HTTP when an endpoint is configured; True when it does.

    Once per process; without an endpoint (or with OTEL_SDK_DISABLED=true) nothing happens,
    and without the `otel` extra a warning says what to install.
    """
    if _tracer is not None:
        return True
    settings = settings or TracingSettings()
    if not settings.exporting:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "an OTLP endpoint is set but the OpenTelemetry SDK is not installed: "
            "pip install 'pim-hub[otel]'; no spans are exported"
        )
        return False
    resource = Resource.create(
        {"service.name": settings.service_name or f"pim-hub-{service}", "pim_hub.service": service}
    )
    provider = TracerProvider(resource=resource)
    # The exporter reads the OTEL_EXPORTER_OTLP_* variables itself (endpoint, headers, ...).
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Also the global provider: libraries that trace through the API join the same traces.
    trace.set_tracer_provider(provider)
    use(provider)
    atexit.register(provider.shutdown)
    logger.info("tracing: spans exported over OTLP", extra={"service": service})
    return True


# ---- the context in record headers ----------------------------------------------------------


def _text(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def text(value: str | bytes | None) -> str:
    """A header value as text (trace headers are ASCII)."""
    return _text(value) or ""


def carrier(headers: RecordHeaders | None) -> TraceHeaders:
    """The trace headers among a record's headers (what a stage passes on)."""
    if not headers:
        return []
    items: Iterable[tuple[str, str | bytes | None]] = (
        headers.items() if isinstance(headers, Mapping) else headers
    )
    out: TraceHeaders = []
    for key, value in items:
        if (key == TRACEPARENT or key == TRACESTATE) and value is not None:
            out.append((key, value if isinstance(value, bytes) else value.encode("latin-1")))
    return out


def trace_id(headers: RecordHeaders | None) -> str | None:
    """The trace id (32 hex digits) a record's `traceparent` names, if it carries a valid one."""
    for key, value in carrier(headers):
        if key == TRACEPARENT:
            parts = (_text(value) or "").strip().split("-")
            if len(parts) >= 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
                return parts[1]
    return None


def _extract(headers: TraceHeaders) -> otel_context.Context:
    return _PROPAGATOR.extract({k: _text(v) or "" for k, v in headers})


def _inject() -> TraceHeaders:
    out: dict[str, str] = {}
    _PROPAGATOR.inject(out)
    return [(k, v.encode("latin-1")) for k, v in out.items()]


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (attributes or {}).items() if v is not None}


class stage:  # used like a function: `with tracing.stage(...) as headers:`
    """The span of one stage's work on one record, child of the record's trace context.

    Entering yields the trace headers for the records the stage writes for it. While the
    block runs, the span is the current one: an HTTP request made inside continues the trace
    (an exception ends it with the error recorded). Without tracing the record's own trace
    headers pass through and nothing is recorded: a class, not a generator, since it runs for
    every record (a generator-based context manager cost several times more per record).
    """

    __slots__ = ("_attributes", "_cm", "_headers", "_kind", "_name")

    def __init__(
        self,
        name: str,
        headers: RecordHeaders | None,
        attributes: Mapping[str, Any] | None = None,
        kind: SpanKind = SpanKind.CONSUMER,
    ) -> None:
        self._name = name
        self._headers = headers
        self._attributes = attributes
        self._kind = kind
        self._cm: Any = None

    def __enter__(self) -> TraceHeaders:
        incoming = carrier(self._headers)
        tracer = _tracer
        if tracer is None:
            return incoming
        parent = _extract(incoming) if incoming else otel_context.Context()
        self._cm = tracer.start_as_current_span(
            self._name, context=parent, kind=self._kind, attributes=_attributes(self._attributes)
        )
        self._cm.__enter__()
        return _inject()

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


@contextmanager
def batch_stage(
    name: str,
    records: Sequence[RecordHeaders | None],
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """One span for work on several records at once (a driver's batch call): the first
    record's trace is its parent, every record's trace a link."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    contexts = [
        trace.get_current_span(_extract(c)).get_span_context() for c in map(carrier, records)
    ]
    valid = [c for c in contexts if c.is_valid]
    parent = _extract(carrier(records[0])) if valid and records else otel_context.Context()
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(c) for c in valid],
        attributes={**_attributes(attributes), "pim_hub.records": len(records)},
    ) as span:
        yield span


def outgoing(method: str, url: str) -> tuple[Any, TraceHeaders] | None:
    """Start the client span of an outgoing HTTP request (child of the current span).

    Returns the span, to be ended with `finish`, and the headers to send; None when
    tracing is off or no trace is current (a request outside any record's work).
    """
    tracer = _tracer
    if tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    span = tracer.start_span(
        f"HTTP {method}",
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.full": url},
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        headers = _inject()
    finally:
        otel_context.detach(token)
    return span, headers


def finish(span: Any, status: int | None = None, error: BaseException | None = None) -> None:
    """End an outgoing request's span with its answer's status or its error."""
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()
