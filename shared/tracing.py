"""One trace per saga: W3C trace context through the outbox, the broker and every consumer.

- The unit of work (shared/uow.py) writes the trace context current at each `emit` into the
  event's outbox row, in the same transaction (shared/outbox.py); while exporting it runs in
  a span of its own.
- The relay publishes each row under a span whose parent is that stored context, and puts its
  own context in the message's headers: `traceparent`, and `tracestate` when set. Its claim of
  a batch is a span of its own with a link to each row's saga.
- The consumer continues the headers' context (`consuming`). Retries, dead letters and DLQ
  replays copy the headers as they are (shared/redelivery.py), so every copy of a message
  stays in its saga's trace; the order row keeps the saga's context for the commands that act
  on a saga later, the reaper's deadline and a customer's cancel (`continuing`).

Propagation is always on. Spans are made, recorded and exported only when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set (OTLP over HTTP, configured by the SDK's own OTEL_*
variables). Without it no span is made at all: each piece of work runs in the context it
continues (the headers', the stored one), whose trace id is all that propagation and the log
lines need; the SDK only gives a POST with no caller's context a trace of its own.

aio-pika's instrumentation is not used: it injects the context current at the publish, which
in the relay is the relay's batch rather than the saga that wrote the row, and it wraps the
queue's callback, where the consumer needs its span around its own unit of work and
redelivery. The propagation API does the same in a few lines.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Link, Span, SpanKind, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

# W3C trace context as it travels: AMQP headers, and a JSON object in the outbox and orders.
TraceContext = dict[str, str]

tracer = trace.get_tracer("saga")
_provider: TracerProvider | None = None
_recording = False  # spans of our own: only while exporting (setup)

# What FastAPI's telemetry leaves out: probes and scrapes are not a saga's work.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def exporting() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(process: str) -> None:
    """The process's tracer provider, named `process` (`order`, `order-relay`). Once per
    process; a second call (tests build several apps in one) keeps the first."""
    global _provider, _recording
    if _provider is not None:
        return
    _recording = exporting()
    if "OTEL_PROPAGATORS" not in os.environ:
        # W3C trace context alone: the SDK's default adds baggage, which nothing here sends,
        # at a third of the cost of every inject and extract.
        propagate.set_global_textmap(TraceContextTextMapPropagator())
    resource = Resource.create({SERVICE_NAME: process})
    if not exporting():
        _provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    else:
        # Imported only when used: the exporter pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        _provider = TracerProvider(resource=resource)  # the sampler OTEL_TRACES_SAMPLER names
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        # A span per statement, some forty per saga: worth their cost only when someone
        # will see them.
        PsycopgInstrumentor().instrument(skip_dep_check=True)
    trace.set_tracer_provider(_provider)


def http_telemetry() -> "TelemetryConfig":
    """FastAPI's own OpenTelemetry (FastAPI 0.142 and later): while exporting, a server span
    per request and a span for each of its steps, continuing a caller's `traceparent`. Off
    otherwise: it wraps every request, reads and polls included, and cost the order service
    more than all the saga's other spans together; the write routes' unit of work continues
    a caller's `traceparent` then (`incoming`). Its metrics and logs stay off: /metrics and
    the log lines are the services' own."""
    return {"tracing": exporting(), "metrics": False, "logs": False, "exclude": _untraced}


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


def incoming(headers: Mapping[str, str]) -> Context | None:
    """The caller's trace context for a request's unit of work; None when a server span
    (`http_telemetry`) already continues it."""
    if trace.get_current_span().get_span_context().is_valid:
        return None
    caller = propagate.extract(headers)
    return caller if trace.get_current_span(caller).get_span_context().is_valid else None


def shutdown() -> None:
    """Export what is still buffered; at the end of the process."""
    if _provider is not None:
        _provider.shutdown()


def current() -> TraceContext:
    """The current span's context, as headers."""
    carrier: TraceContext = {}
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    """The current trace's id in hex, for log lines; None outside any span."""
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def trace_id_of(carrier: Mapping[str, Any] | None) -> str | None:
    """The trace id a carrier (headers, a stored context) names, or None."""
    context = trace.get_current_span(propagate.extract(carrier or {}, getter=_GETTER))
    span_context = context.get_span_context()
    return format_trace_id(span_context.trace_id) if span_context.is_valid else None


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """AMQP header values arrive as str or, from some clients, bytes."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


@contextlib.contextmanager
def consuming(
    headers: Mapping[str, Any], name: str, attributes: Mapping[str, Any]
) -> Iterator[Span]:
    """The span of one delivery, a child of the span that published it."""
    parent = propagate.extract(headers, getter=_GETTER)
    if not _recording:
        with _within(parent) as span:
            yield span
        return
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def publishing(
    stored: Mapping[str, Any] | None, name: str, attributes: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """The span of one publish, a child of the unit of work that wrote the row (`stored`);
    yields the headers that carry it."""
    if not _recording:
        yield dict(stored or {})  # the row's own context, as it was stored
        return
    parent = propagate.extract(stored or {}, getter=_GETTER)
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.PRODUCER, attributes=attributes
    ):
        yield dict(current())


@contextlib.contextmanager
def continuing(stored: Mapping[str, Any] | None, name: str) -> Iterator[Span]:
    """A span in the saga's trace (`stored`, kept with the order) for work that acts on the
    saga from elsewhere, linked to the span that did it (a cancel request, the reaper)."""
    saga = propagate.extract(stored or {}, getter=_GETTER)
    if not trace.get_current_span(saga).get_span_context().is_valid:
        saga = otel_context.get_current()  # an order from before tracing: stay where we are
    if not _recording:
        with _within(saga) as span:
            yield span
        return
    here = trace.get_current_span().get_span_context()
    linked = here.is_valid and here != trace.get_current_span(saga).get_span_context()
    with tracer.start_as_current_span(
        name, context=saga, links=[Link(here)] if linked else []
    ) as span:
        yield span


@contextlib.contextmanager
def batch(carriers: list[Mapping[str, Any] | None]) -> Iterator[None]:
    """The span of a batch that serves several sagas, linked to each (the relay's claim)."""
    if not _recording:
        yield
        return
    with tracer.start_as_current_span(
        "relay batch",
        links=links_to(carriers),
        attributes={"messaging.batch.message_count": len(carriers)},
    ):
        yield


def start(
    name: str, attributes: Mapping[str, Any], parent: Context | None = None
) -> tuple[Span, object]:
    """A span for work that begins and ends apart (the unit of work's enter and exit), made
    current; `end` it with the token. Without an exporter, the context it would continue."""
    if not _recording:
        if parent is None:  # a POST with no caller's context: a trace of its own
            if trace.get_current_span().get_span_context().is_valid:
                return trace.get_current_span(), None
            parent = trace.set_span_in_context(tracer.start_span(name))
        return trace.get_current_span(parent), otel_context.attach(parent)
    span = tracer.start_span(name, context=parent, attributes=attributes)
    return span, otel_context.attach(trace.set_span_in_context(span))


def end(span: Span, token: object, exc: BaseException | None) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]
    if _recording:
        if exc is not None:
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
        span.end()


@contextlib.contextmanager
def _within(parent: Context) -> Iterator[Span]:
    """Run in `parent` itself, with no span of our own."""
    token = otel_context.attach(parent)
    try:
        yield trace.get_current_span(parent)
    finally:
        otel_context.detach(token)


def links_to(carriers: list[Mapping[str, Any] | None]) -> list[Link]:
    """Links to the spans the carriers name: a batch that serves several sagas."""
    links = []
    for carrier in carriers:
        context = trace.get_current_span(propagate.extract(carrier or {}, getter=_GETTER))
        if (span_context := context.get_span_context()).is_valid:
            links.append(Link(span_context))
    return links
