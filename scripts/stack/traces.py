"""An OTLP/HTTP trace receiver of our own: what the processes export, kept in memory.

For the tracing test (tests/e2e/test_tracing.py), which checks the trees the spans form, and
for `./saga bench --export-traces`, which measures what exporting costs against a receiver
that answers at once. It speaks what the SDK's OTLPSpanExporter sends: `POST /v1/traces`, a
protobuf ExportTraceServiceRequest (gzip-compressed when OTEL_EXPORTER_OTLP_COMPRESSION asks).
"""

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str  # empty for a root
    name: str
    kind: str  # "SERVER", "CONSUMER", "PRODUCER", "INTERNAL", "CLIENT"
    process: str  # the resource's service.name
    attributes: dict[str, Any] = field(hash=False)
    links: tuple[str, ...] = ()  # the trace ids linked to


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _spans_of(request: ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    name=span.name,
                    kind=span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                    process=str(resource.get("service.name", "")),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    links=tuple(link.trace_id.hex() for link in span.links),
                )


class TraceReceiver:
    """`with TraceReceiver().running() as receiver:` point OTEL_EXPORTER_OTLP_ENDPOINT at
    `receiver.endpoint`; `receiver.spans()` is what arrived so far."""

    def __init__(self, keep: bool = True) -> None:
        self._keep = keep  # False: count only (the benchmark)
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.count = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    @contextmanager
    def running(self) -> Iterator["TraceReceiver"]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    def _received(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = list(_spans_of(request))
        with self._lock:
            self.count += len(spans)
            if self._keep:
                self._spans.extend(spans)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                try:
                    receiver._received(body)
                except Exception as exc:  # a body we cannot read: say so, as a collector does
                    self.send_error(400, str(exc)[:200])
                    return
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test's output is its assertions

        return Handler
