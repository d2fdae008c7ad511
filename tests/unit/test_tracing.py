"""The trace context's pieces alone: carriers as AMQP brings them, the saga's trace continued by
a cancel, and the trace id in log lines (shared/tracing.py, shared/log.py)."""

import json
import logging
from collections.abc import Iterator

import pytest

from shared import log, tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
STORED = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}


@pytest.fixture(autouse=True, scope="module")
def provider() -> None:
    tracing.setup("unit")


def test_a_carrier_names_its_trace_whether_its_values_are_str_or_bytes() -> None:
    assert tracing.trace_id_of(STORED) == TRACE
    assert tracing.trace_id_of({"traceparent": STORED["traceparent"].encode()}) == TRACE
    assert tracing.trace_id_of({"traceparent": "garbage"}) is None
    assert tracing.trace_id_of(None) is None


def test_without_an_exporter_work_runs_in_the_context_it_continues() -> None:
    with tracing.consuming(STORED, "process OrderCreated", {}) as span:
        # No span of our own (shared/tracing.py): the headers' context, and its trace id.
        assert not span.is_recording()
        assert span.get_span_context().trace_id == int(TRACE, 16)
        assert tracing.current_trace_id() == TRACE
        carrier = tracing.current()
    assert carrier["traceparent"] == STORED["traceparent"]
    with tracing.publishing(carrier, "publish PaymentSucceeded", {}) as headers:
        pass
    assert headers == STORED  # the row's stored context goes out as it is
    assert tracing.current_trace_id() is None  # and nothing is left attached


def test_a_post_without_a_callers_context_starts_a_trace_of_its_own() -> None:
    span, token = tracing.start("unit of work", {})
    try:
        first = tracing.current_trace_id()
        assert first is not None and first != TRACE
    finally:
        tracing.end(span, token, None)
    assert tracing.current_trace_id() is None
    assert tracing.incoming({}) is None  # a request without traceparent: no caller's context
    span, token = tracing.start("unit of work", {}, tracing.incoming(STORED))
    try:
        assert tracing.current_trace_id() == TRACE  # a caller's traceparent is continued
    finally:
        tracing.end(span, token, None)


def test_a_cancel_continues_the_sagas_trace() -> None:
    with tracing.tracer.start_as_current_span("reaper pass"):
        reaper = tracing.current_trace_id()
        assert reaper not in (None, TRACE)
        with tracing.continuing(STORED, "cancel order (timeout)"):
            assert tracing.current_trace_id() == TRACE
        assert tracing.current_trace_id() == reaper
        with tracing.continuing(None, "cancel of an order from before tracing"):
            assert tracing.current_trace_id() == reaper  # no saga's trace to continue


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """log.setup replaces the root logger's handlers and turns off the caller, thread and
    process lookups: put back pytest's handlers and the lookups its reports show."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    lookups = (logging._srcfile, logging.logThreads, logging.logProcesses,
               logging.logMultiprocessing)  # fmt: skip
    yield
    root.handlers[:], root.level = handlers, level
    (logging._srcfile, logging.logThreads, logging.logProcesses,
     logging.logMultiprocessing) = lookups  # fmt: skip


def _line(as_json: bool, trace_ids: bool | None, capsys: pytest.CaptureFixture[str]) -> str:
    log.setup("payment", "INFO", as_json, trace_ids)
    with tracing.consuming(STORED, "process OrderCreated", {}):
        log.for_order(logging.getLogger("consumer"), "3f2a9c1e-0000-0000-0000-000000000000").info(
            "charged 5000"
        )
    logging.getLogger("consumer").info("outside any saga")
    return capsys.readouterr().out


def test_log_lines_name_the_trace_when_asked_and_by_default_in_json(
    capsys: pytest.CaptureFixture[str], logging_restored: None
) -> None:
    readable, outside = _line(False, None, capsys).splitlines()
    assert readable.endswith("payment   | order 3f2a9c1e | charged 5000")
    readable, outside = _line(False, True, capsys).splitlines()
    assert readable.endswith(f"| order 3f2a9c1e | trace {TRACE} | charged 5000")
    assert "trace" not in outside
    entry, outside = (json.loads(line) for line in _line(True, None, capsys).splitlines())
    assert entry["trace_id"] == TRACE and entry["order_id"].startswith("3f2a9c1e")
    assert "trace_id" not in outside
    entry, _ = (json.loads(line) for line in _line(True, False, capsys).splitlines())
    assert "trace_id" not in entry
