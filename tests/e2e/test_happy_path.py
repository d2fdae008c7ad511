"""The happy path end to end: POST /orders, and a moment later the order is CONFIRMED."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import aio_pika
import pytest

from shared.audit import read_audit
from shared.broker import connect
from shared.envelope import wrap
from shared.events import Item, OrderCreated
from shared.system import SERVICE_NAMES, Mode
from shared.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE
from tests.clients.api import SagaClient, post_orders
from tests.clients.broker import broker, publish
from tests.clients.database import sql
from tests.clients.processes import LogCursor
from tests.polling import eventually, wait_until


def test_funded_customer_ordering_stocked_skus_is_confirmed(saga: SagaClient) -> None:
    customer = saga.funded_customer(10_000)
    shirt, mug = saga.stocked_sku(5), saga.stocked_sku(3)

    order = saga.place_order(customer, (shirt, 2, 1_500), (mug, 1, 2_000))
    assert order["status"] == "PENDING"
    assert order["total_cents"] == 5_000

    confirmed = saga.wait_for_status(order["order_id"], "CONFIRMED")
    assert confirmed["reason"] is None
    assert saga.balance(customer) == 5_000
    assert saga.product(shirt) == {"sku": shirt, "available": 3, "reserved": 2}
    assert saga.product(mug) == {"sku": mug, "available": 2, "reserved": 1}

    payments = saga.payments(order["order_id"])
    assert [charge["amount_cents"] for charge in payments["charges"]] == [5_000]
    assert payments["refunds"] == []
    [reservation] = saga.reservations(order["order_id"])
    assert reservation["status"] == "RESERVED"
    assert reservation["items"] == order["items"]
    assert saga.history(order["order_id"]) == ["PENDING", "PAID", "CONFIRMED"]


@pytest.mark.only_in(Mode.CHOREOGRAPHY)  # payment hears OrderCreated only in choreography
async def test_the_same_order_created_ten_times_charges_once(saga: SagaClient) -> None:
    customer = saga.funded_customer(10_000)
    sku = saga.stocked_sku(10)
    event = OrderCreated(
        order_id=uuid4(),
        customer_id=customer,
        items=[Item(sku=sku, quantity=1, unit_price_cents=700)],
        total_cents=700,
        deadline_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    envelope = wrap(event, producer="test", causation_id=None)
    payment_log = LogCursor(saga.stack, "payment")

    async with broker(saga.stack) as exchange:
        for _ in range(10):
            await publish(exchange, envelope, "order.created")

    log = await asyncio.to_thread(
        payment_log.wait_for, f"duplicate OrderCreated {str(envelope.message_id)[:8]} ignored", 9
    )
    assert log.count("charged 700") == 1
    assert len(saga.payments(str(event.order_id))["charges"]) == 1
    assert saga.balance(customer) == 9_300


async def test_a_hundred_concurrent_orders_conserve_money_and_stock(saga: SagaClient) -> None:
    customers = {saga.funded_customer(100_000): 100_000 for _ in range(10)}
    skus = {saga.stocked_sku(1_000): 1_000 for _ in range(5)}
    customer_ids, sku_ids = list(customers), list(skus)
    lines = [
        (
            customer_ids[n % 10],
            [(sku_ids[n % 5], 1 + n % 3, 250 + n), (sku_ids[(n + 1) % 5], 1, 99)],
        )
        for n in range(100)
    ]

    order_ids = await post_orders(saga.stack, lines)

    def all_confirmed() -> bool:
        statuses = [saga.get_order(order_id)["status"] for order_id in order_ids]
        assert not {"REJECTED", "CANCELLED"} & set(statuses), statuses
        return statuses == ["CONFIRMED"] * 100

    await asyncio.to_thread(wait_until, all_confirmed, 60, "100 orders to be CONFIRMED")

    spent = dict.fromkeys(customers, 0)
    taken = dict.fromkeys(skus, 0)
    for customer, items in lines:
        for sku, qty, price in items:
            spent[customer] += qty * price
            taken[sku] += qty
    for customer, deposited in customers.items():
        assert saga.balance(customer) == deposited - spent[customer]
    for sku, stocked in skus.items():
        assert saga.product(sku) == {
            "sku": sku,
            "available": stocked - taken[sku],
            "reserved": taken[sku],
        }


def test_every_event_of_the_saga_carries_the_callers_trace_id(saga: SagaClient) -> None:
    """Propagation with nothing exporting (the run's stack): the POST's `traceparent` reaches
    every service, through the outbox and the headers (tests/e2e/test_tracing.py: the spans)."""
    trace_id = uuid4().hex
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(2)
    order_id = saga.place_order(
        customer, (sku, 1, 300), traceparent=f"00-{trace_id}-{uuid4().hex[:16]}-01"
    )["order_id"]
    saga.wait_for_status(order_id, "CONFIRMED")
    assert set(trace_ids_of(saga, order_id).values()) == {trace_id}
    # Without one, the POST starts the saga's own trace, which every event carries.
    alone = saga.place_order(customer, (sku, 1, 300))["order_id"]
    saga.wait_for_status(alone, "CONFIRMED")
    [own] = set(trace_ids_of(saga, alone).values())
    assert own and own != trace_id
    commands = ["ChargePayment", "ReserveInventory"] if saga.orchestrated else []
    assert trace_ids_of(saga, order_id) == {
        ("order", "OrderCreated"): trace_id,
        **{("order", command): trace_id for command in commands},
        ("payment", "PaymentSucceeded"): trace_id,
        ("inventory", "InventoryReserved"): trace_id,
        ("order", "OrderConfirmed"): trace_id,
    }


def trace_ids_of(saga: SagaClient, order_id: str) -> dict[tuple[str, str], str]:
    """The trace id each outbox row of the saga carries, by service and event type."""
    return {
        (service, body["type"]): context["traceparent"].split("-")[1]
        for service in SERVICE_NAMES
        for body, context in sql(
            saga.stack, service,
            "SELECT body, trace_context FROM outbox WHERE body->>'correlation_id' = %s",
            order_id,
        )
    }  # fmt: skip


async def test_every_message_of_a_saga_reaches_the_audit_stream_as_spec_describes_it(
    saga: SagaClient,
) -> None:
    """SPEC.md, "Events": each message the three relays published for a saga (a refunded one:
    every service speaks) is in `saga.audit` once, with the AMQP properties a consumer relies
    on: message_id and correlation_id as in the body, type, JSON, persistent, a timestamp, and
    the trace context."""
    customer, plenty, scarce = saga.funded_customer(5_000), saga.stocked_sku(5), saga.stocked_sku(1)
    order_id = saga.place_order(customer, (plenty, 1, 300), (scarce, 2, 400))["order_id"]
    await asyncio.to_thread(saga.wait_for_status, order_id, "REJECTED")
    published = await asyncio.to_thread(published_for, saga, order_id, "PaymentRefunded")

    async def audited() -> list[aio_pika.abc.AbstractIncomingMessage] | None:
        async with await connect(saga.stack.config.amqp_url) as connection:
            messages = await read_audit(connection, idle_seconds=0.3)
        mine = [m for m in messages if m.correlation_id == order_id and m.exchange in SAGA]
        return mine if {m.message_id for m in mine} >= set(published) else None

    messages = await eventually(audited, 15, f"every message of {order_id} in saga.audit")
    assert sorted(str(m.message_id) for m in messages) == sorted(published)  # each once
    for message in messages:
        body = json.loads(message.body)
        assert message.message_id == body["message_id"], body
        assert message.correlation_id == body["correlation_id"] == order_id, body
        assert message.type == body["type"] == published[body["message_id"]], body
        assert message.content_type == "application/json", body["type"]
        assert message.delivery_mode is aio_pika.DeliveryMode.PERSISTENT, body["type"]
        assert message.timestamp is not None, body["type"]
        occurred = datetime.fromisoformat(body["occurred_at"])
        assert abs((message.timestamp - occurred).total_seconds()) < 60, body["type"]
        assert str(message.headers["traceparent"]).startswith("00-"), body["type"]


SAGA = (EVENTS_EXCHANGE, COMMANDS_EXCHANGE)


OUTBOX_OF_ORDER = """
    SELECT message_id::text, body->>'type', published_at FROM outbox
    WHERE body->>'correlation_id' = %s
"""


def published_for(saga: SagaClient, order_id: str, last: str) -> dict[str, str]:
    """Message id -> type of every outbox row of the saga, once `last` is among them and every
    row is published."""

    def rows() -> list[tuple[str, str, object]] | None:
        found = [
            row
            for service in SERVICE_NAMES
            for row in sql(saga.stack, service, OUTBOX_OF_ORDER, order_id)
        ]
        done = last in {type_ for _, type_, _ in found} and all(at for *_, at in found)
        return found if done else None

    found = wait_until(rows, what=f"{order_id}'s {last} published")
    return {message_id: type_ for message_id, type_, _ in found}
