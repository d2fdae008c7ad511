"""Late, duplicate and reordered events, published straight to the exchange in a chosen order.

Synthetic sagas (an order id the order service never saw) isolate one service's reaction;
the order service merely logs their events as being for an unknown order.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from shared.events import (
    InventoryFailed,
    Item,
    OrderCancelled,
    OrderCreated,
    PaymentFailed,
    PaymentSucceeded,
)
from shared.system import Mode
from tests.clients.api import SagaClient
from tests.clients.broker import broker, publish_event
from tests.clients.processes import LogCursor
from tests.polling import wait_until

# Choreography only: it publishes choreography's events to the participants. The orchestrated
# saga's late and reordered replies are tests/unit/test_saga_steps.py's (hypothesis) and
# tests/integration/test_command_handlers.py's.
pytestmark = pytest.mark.only_in(Mode.CHOREOGRAPHY)


def order_created(order_id: UUID, customer: str, sku: str, cents: int) -> OrderCreated:
    return OrderCreated(
        order_id=order_id,
        customer_id=customer,
        items=[Item(sku=sku, quantity=1, unit_price_cents=cents)],
        total_cents=cents,
        deadline_at=datetime.now(UTC) + timedelta(minutes=1),
    )


def payment_succeeded(order_id: UUID, sku: str, quantity: int) -> PaymentSucceeded:
    return PaymentSucceeded(
        order_id=order_id,
        payment_id=uuid4(),
        customer_id="someone",
        amount_cents=0,
        items=[Item(sku=sku, quantity=quantity, unit_price_cents=0)],
    )


def short(order_id: UUID) -> str:
    """The order's id as the services' log lines show it: each wait names its own saga, so
    another saga's line cannot end it."""
    return str(order_id)[:8]


async def wait_for(check, what: str) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(wait_until, check, 15, what)


async def test_an_order_created_after_its_cancel_is_never_charged(saga: SagaClient) -> None:
    customer, order_id = saga.funded_customer(1_000), uuid4()
    payment_log = LogCursor(saga.stack, "payment")
    async with broker(saga.stack) as exchange:
        await publish_event(exchange, OrderCancelled(order_id=order_id, reason="customer"))
        await asyncio.to_thread(
            payment_log.wait_for, f"order {short(order_id)} | nothing to refund, never charged"
        )
        await publish_event(exchange, order_created(order_id, customer, "any", 600))
    await asyncio.to_thread(
        payment_log.wait_for,
        f"order {short(order_id)} | not charged, the order was cancelled first "
        "for OrderCreated -> PaymentFailed",
    )
    assert saga.payments(str(order_id))["charges"] == []
    assert saga.balance(customer) == 1_000


async def test_inventory_never_reserves_for_a_cancelled_order(saga: SagaClient) -> None:
    sku, order_id = saga.stocked_sku(5), uuid4()
    inventory_log = LogCursor(saga.stack, "inventory")
    async with broker(saga.stack) as exchange:
        await publish_event(exchange, OrderCancelled(order_id=order_id, reason="timeout"))
        await asyncio.to_thread(
            inventory_log.wait_for, f"order {short(order_id)} | nothing to release, never reserved"
        )
        await publish_event(exchange, payment_succeeded(order_id, sku, 2))
    await asyncio.to_thread(
        inventory_log.wait_for,
        f"order {short(order_id)} | not reserved, the order was cancelled first "
        "for PaymentSucceeded -> InventoryFailed",
    )
    assert saga.reservations(str(order_id)) == []
    assert saga.product(sku) == {"sku": sku, "available": 5, "reserved": 0}


async def test_a_reservation_made_just_before_the_cancel_is_released_once(
    saga: SagaClient,
) -> None:
    sku, order_id = saga.stocked_sku(5), uuid4()
    inventory_log = LogCursor(saga.stack, "inventory")
    async with broker(saga.stack) as exchange:
        await publish_event(exchange, payment_succeeded(order_id, sku, 3))
        await wait_for(lambda: saga.reservations(str(order_id)), "the reservation")
        assert saga.product(sku) == {"sku": sku, "available": 2, "reserved": 3}
        for _ in range(3):  # three distinct cancel messages for the same order
            await publish_event(exchange, OrderCancelled(order_id=order_id, reason="customer"))
    await asyncio.to_thread(
        inventory_log.wait_for, f"order {short(order_id)} | already released", 2
    )
    [reservation] = saga.reservations(str(order_id))
    assert reservation["status"] == "RELEASED"
    assert saga.product(sku) == {"sku": sku, "available": 5, "reserved": 0}
    assert inventory_log.read().count(f"order {short(order_id)} | released 3 x") == 1


async def test_any_mix_of_failures_and_cancels_refunds_at_most_once(saga: SagaClient) -> None:
    customer, order_id = saga.funded_customer(2_000), uuid4()
    payment_log = LogCursor(saga.stack, "payment")
    async with broker(saga.stack) as exchange:
        await publish_event(exchange, order_created(order_id, customer, "no-such-sku", 700))
        await wait_for(lambda: saga.payments(str(order_id))["charges"], "the charge")
        for event in (
            InventoryFailed(order_id=order_id, reason="out_of_stock", sku="x"),
            OrderCancelled(order_id=order_id, reason="timeout"),
            InventoryFailed(order_id=order_id, reason="order_cancelled"),
            OrderCancelled(order_id=order_id, reason="customer"),
        ):
            await publish_event(exchange, event)
    # The synthetic order also fails inventory for real (unknown sku): one more InventoryFailed.
    await asyncio.to_thread(payment_log.wait_for, f"order {short(order_id)} | already refunded", 4)
    payments = saga.payments(str(order_id))
    assert len(payments["charges"]) == len(payments["refunds"]) == 1
    assert saga.balance(customer) == 2_000


async def test_a_terminal_order_never_moves_again(saga: SagaClient) -> None:
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(5)
    order = saga.place_order(customer, (sku, 1, 100))
    order_id = UUID(order["order_id"])
    saga.wait_for_status(str(order_id), "CONFIRMED")
    order_log = LogCursor(saga.stack, "order")
    async with broker(saga.stack) as exchange:
        for event in (
            PaymentFailed(order_id=order_id, reason="insufficient_funds"),
            InventoryFailed(order_id=order_id, reason="out_of_stock", sku=sku),
            payment_succeeded(order_id, sku, 1),
        ):
            await publish_event(exchange, event)
    await asyncio.to_thread(
        order_log.wait_for, f"order {short(order_id)} | ignored, order is CONFIRMED", 3
    )
    assert saga.get_order(str(order_id))["status"] == "CONFIRMED"
    assert saga.history(str(order_id)) == ["PENDING", "PAID", "CONFIRMED"]
    cancel = saga.order.post(f"/orders/{order_id}/cancel")
    assert cancel.status_code == 409
