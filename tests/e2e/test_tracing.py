"""One trace per saga: every span of a saga, on all six processes, shares the trace id of the POST
that started it and forms one tree whose parent links follow causation_id (SPEC.md, "Events").

A stack of its own exports to an OTLP receiver of the test's own (scripts/stack/traces.py).
The walk: a delivery's span is a child of the relay's publish of that message; the publish is
a child of the span that emitted the event, under the delivery of its cause (or, for the
first event and for a cancel, the saga's POST).
"""

import subprocess
import sys
from collections.abc import Iterator
from uuid import uuid4

import pytest

from scripts.stack import Stack, StackConfig
from scripts.stack.traces import ReceivedSpan, TraceReceiver
from shared.system import RELAYS, SERVICE_NAMES
from tests.clients.api import SagaClient
from tests.clients.database import sql
from tests.clients.processes import LogCursor, restarted_with, stopped
from tests.conftest import TEST_ENV
from tests.polling import wait_until

PROCESSES = {*SERVICE_NAMES, *RELAYS}


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, TraceReceiver]]:
    with TraceReceiver().running() as receiver:
        env = {
            **TEST_ENV,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans arrive soon after they end
            "LOG_TRACE_IDS": "true",
        }
        config = StackConfig.isolated("sagatest", tmp_path_factory.mktemp("traced"), env=env)
        with Stack(config).running() as stack:
            yield stack, receiver


@pytest.fixture(scope="module")
def saga(traced: tuple[Stack, TraceReceiver]) -> Iterator[SagaClient[Stack]]:
    with SagaClient(traced[0]) as client:
        yield client


def messages_of(stack: Stack, order_id: str) -> dict[str, dict]:
    """Every event of the saga, from the three outboxes: {message_id: envelope}."""
    found = {}
    for service in SERVICE_NAMES:
        for (body,) in sql(
            stack, service, "SELECT body FROM outbox WHERE body->>'correlation_id' = %s", order_id
        ):
            found[body["message_id"]] = body
    return found


def trace_of(receiver: TraceReceiver, order_id: str) -> list[ReceivedSpan]:
    """Every span in the trace of the saga's spans (they must all be in one)."""
    mine = [s for s in receiver.spans() if s.attributes.get("saga.order_id") == order_id]
    trace_ids = {span.trace_id for span in mine}
    if not trace_ids:
        return []  # none exported yet
    assert len(trace_ids) == 1, f"the saga's spans are in {len(trace_ids)} traces"
    [trace_id] = trace_ids
    return [span for span in receiver.spans() if span.trace_id == trace_id]


def tree_problems(spans: list[ReceivedSpan], messages: dict[str, dict]) -> list[str]:
    """What keeps the spans from being one tree that follows causation_id: empty when they
    are. Retried until the last span has arrived."""
    by_id = {span.span_id: span for span in spans}
    problems = []
    roots = [span for span in spans if span.parent_span_id not in by_id]
    if len(roots) != 1:
        problems.append(f"{len(roots)} roots: {[r.name for r in roots]}")

    def consumed_above(span: ReceivedSpan) -> str | None:
        """The message whose delivery the span runs under, if any."""
        while (span := by_id.get(span.parent_span_id)) is not None:  # type: ignore[assignment]
            if span.kind == "CONSUMER":
                return span.attributes["messaging.message.id"]
        return None

    publishes = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == "PRODUCER"}
    for message_id, envelope in messages.items():
        publish = publishes.get(message_id)
        if publish is None:
            problems.append(f"no publish of {envelope['type']}")
            continue
        if consumed_above(publish) != envelope["causation_id"]:
            problems.append(
                f"{envelope['type']} published under {consumed_above(publish)}, "
                f"caused by {envelope['causation_id']}"
            )
    for span in spans:
        if span.kind != "CONSUMER":
            continue
        message_id = span.attributes["messaging.message.id"]
        parent = by_id.get(span.parent_span_id)
        if parent is None or parent is not publishes.get(message_id):
            problems.append(f"{span.name} on {span.process} is not under its publish")
    return problems


def assert_one_tree(
    stack: Stack, receiver: TraceReceiver, order_id: str, processes: set[str]
) -> list[ReceivedSpan]:
    messages = messages_of(stack, order_id)

    def settled() -> list[ReceivedSpan] | None:
        spans = trace_of(receiver, order_id)
        if not spans:
            return None
        seen = {span.process for span in spans}
        return spans if seen >= processes and not tree_problems(spans, messages) else None

    try:
        return wait_until(settled, 20, f"one tree for the saga of {order_id}")
    except AssertionError:
        spans = trace_of(receiver, order_id)
        problems = tree_problems(spans, messages)
        raise AssertionError(
            f"saga {order_id}: processes {sorted({s.process for s in spans})}, {problems}"
        ) from None


def test_a_confirmed_saga_is_one_trace_under_the_callers_traceparent(
    saga: SagaClient, traced: tuple[Stack, TraceReceiver]
) -> None:
    stack, receiver = traced
    caller_trace, caller_span = uuid4().hex, uuid4().hex[:16]
    payment_log = LogCursor(stack, "payment")
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(3)
    order = saga.place_order(
        customer, (sku, 2, 250), traceparent=f"00-{caller_trace}-{caller_span}-01"
    )
    order_id = order["order_id"]
    saga.wait_for_status(order_id, "CONFIRMED")

    spans = assert_one_tree(stack, receiver, order_id, PROCESSES)
    assert {span.trace_id for span in spans} == {caller_trace}
    [root] = [span for span in spans if span.parent_span_id == caller_span]
    assert root.kind == "SERVER" and root.process == "order" and "/orders" in root.name
    types = {envelope["type"] for envelope in messages_of(stack, order_id).values()}
    assert types == {"OrderCreated", "PaymentSucceeded", "InventoryReserved", "OrderConfirmed"}
    # The statements are spans too (psycopg's instrumentation, on while exporting).
    assert any(span.kind == "CLIENT" and span.process == "payment" for span in spans)
    # And the log lines of the saga name its trace.
    payment_log.wait_for(f"order {order_id[:8]} | trace {caller_trace} | charged 500")


def test_a_declined_saga_is_one_trace(
    saga: SagaClient, traced: tuple[Stack, TraceReceiver]
) -> None:
    stack, receiver = traced
    customer, sku = saga.funded_customer(100), saga.stocked_sku(3)
    order_id = saga.place_order(customer, (sku, 1, 500))["order_id"]
    saga.wait_for_status(order_id, "REJECTED")
    spans = assert_one_tree(
        stack, receiver, order_id, {"order", "order-relay", "payment", "payment-relay"}
    )
    [root] = [span for span in spans if span.parent_span_id == ""]
    assert root.process == "order" and root.kind == "SERVER"


def test_an_out_of_stock_saga_and_its_refund_are_one_trace(
    saga: SagaClient, traced: tuple[Stack, TraceReceiver]
) -> None:
    stack, receiver = traced
    customer, sku = saga.funded_customer(5_000), saga.stocked_sku(1)
    order_id = saga.place_order(customer, (sku, 2, 700))["order_id"]
    saga.wait_for_status(order_id, "REJECTED")
    wait_until(lambda: saga.payments(order_id)["refunds"], what="the refund")
    spans = assert_one_tree(stack, receiver, order_id, PROCESSES)
    refund = [s for s in spans if s.name == "publish PaymentRefunded"]
    assert refund, "the refund's event is in the saga's trace"


def test_a_saga_cancelled_by_its_deadline_is_one_trace(
    saga: SagaClient, traced: tuple[Stack, TraceReceiver]
) -> None:
    stack, receiver = traced
    customer, sku = saga.funded_customer(3_000), saga.stocked_sku(4)
    with restarted_with(stack, "order", ORDER_DEADLINE_SECONDS="1.5"), stopped(stack, "inventory"):
        order_id = saga.place_order(customer, (sku, 2, 600))["order_id"]
        saga.wait_for_status(order_id, "CANCELLED", timeout=10)
    wait_until(
        lambda: all(r["status"] == "RELEASED" for r in saga.reservations(order_id)),
        what="inventory to catch up",
    )
    spans = assert_one_tree(stack, receiver, order_id, PROCESSES)
    [cancel] = [s for s in spans if s.name == "cancel order (timeout)"]
    # The reaper's pass is linked from the saga's trace, not its parent.
    assert cancel.links and cancel.process == "order"


def test_a_retried_dead_lettered_and_replayed_message_stays_in_its_trace(
    saga: SagaClient, traced: tuple[Stack, TraceReceiver]
) -> None:
    stack, receiver = traced
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(5)
    log = LogCursor(stack, "payment")
    with restarted_with(stack, "payment", FAULT_FAIL_HANDLER="charge_for_order:100"):
        order_id = saga.place_order(customer, (sku, 2, 150))["order_id"]
        log.wait_for(f"order {order_id[:8]} | trace", timeout=5)
        log.wait_for("dead-lettered", timeout=20)
    [created] = [m for m, e in messages_of(stack, order_id).items() if e["type"] == "OrderCreated"]
    replayed = subprocess.run(
        [sys.executable, "-m", "scripts.ops.dlq", "--amqp-url", stack.config.amqp_url,
         "replay", "payment", created],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    saga.wait_for_status(order_id, "CONFIRMED")

    spans = assert_one_tree(stack, receiver, order_id, PROCESSES)
    deliveries = [
        s for s in spans
        if s.kind == "CONSUMER" and s.process == "payment"
        and s.attributes["messaging.message.id"] == created
    ]  # fmt: skip
    # The first delivery, three retries, then the replay: five deliveries, one publish.
    assert sorted(s.attributes["saga.attempt"] for s in deliveries) == [0, 0, 1, 2, 3]
    assert len({s.parent_span_id for s in deliveries}) == 1
