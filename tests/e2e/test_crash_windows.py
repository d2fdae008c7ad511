"""Processes killed with SIGKILL at each crash window of the outbox and the inbox.

Whatever the window, every event is delivered at least once and applied exactly once; the
same when several deliveries committed in one transaction (shared/batching.py).
"""

import asyncio
import json
import signal
import uuid

import aio_pika
import pytest

from scripts.stack import Stack
from shared.system import Mode
from tests.bodies import order_created_body
from tests.clients.api import SagaClient
from tests.clients.broker import broker
from tests.clients.database import sql
from tests.clients.processes import LogCursor
from tests.polling import wait_until


def pending_outbox(stack: Stack, service: str, order_id: str) -> list[str]:
    rows = sql(
        stack,
        service,
        "SELECT body->>'type' FROM outbox "
        "WHERE published_at IS NULL AND body->>'correlation_id' = %s",
        order_id,
    )
    return [row[0] for row in rows]


def test_a_killed_relay_publishes_its_pending_rows_after_restart(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
    stack.kill("order-relay", signal.SIGKILL)
    try:
        orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(3)]
        for order_id in orders:
            assert pending_outbox(stack, "order", order_id) == saga.placed
            assert saga.get_order(order_id)["status"] == "PENDING"
    finally:
        stack.start("order-relay")
    stack.wait_ready("order-relay")
    for order_id in orders:
        saga.wait_for_status(order_id, "CONFIRMED")
    # OrderConfirmed commits with the status: the relay publishes it a moment later.
    wait_until(lambda: published_all(stack, orders), what="every row published")
    assert saga.balance(customer) == 9_700


def test_a_relay_dying_between_publish_and_mark_causes_a_duplicate_and_one_effect(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
    stack.kill("order-relay")
    order_id = saga.place_order(customer, (sku, 2, 450))["order_id"]
    payment_log = LogCursor(stack, "payment")

    stack.start("order-relay", FAULT_CRASH_AFTER_PUBLISH="true")
    assert stack.wait_exit("order-relay") == -signal.SIGKILL
    # Published and confirmed, but the relay died before marking it: still pending (and the
    # saga moved on without it, so OrderConfirmed may be waiting too).
    payment_log.wait_for(f"order {order_id[:8]} | charged 900")
    charge_request, _ = saga.charge_request
    assert charge_request in pending_outbox(stack, "order", order_id)

    stack.start("order-relay")
    saga.wait_for_status(order_id, "CONFIRMED")
    payment_log.wait_for(f"order {order_id[:8]} | duplicate {charge_request}")
    wait_until(lambda: not pending_outbox(stack, "order", order_id), what="none pending")
    assert len(saga.payments(order_id)["charges"]) == 1
    assert saga.balance(customer) == 9_100


def test_a_consumer_killed_after_commit_before_ack_is_redelivered_with_one_effect(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
    charge_request, routing_key = saga.charge_request
    stack.stop("payment")
    stack.start("payment", FAULT_CRASH_AFTER_COMMIT=routing_key)
    stack.wait_ready("payment")

    order_id = saga.place_order(customer, (sku, 1, 1_234))["order_id"]
    assert stack.wait_exit("payment") == -signal.SIGKILL
    # The charge committed before the crash; the delivery was never acked.
    charges = sql(
        stack, "payment", "SELECT amount_cents FROM charges WHERE order_id = %s", order_id
    )
    assert charges == [(1_234,)]

    payment_log = LogCursor(stack, "payment")
    stack.start("payment")
    stack.wait_ready("payment")
    saga.wait_for_status(order_id, "CONFIRMED")
    payment_log.wait_for(f"order {order_id[:8]} | duplicate {charge_request}")
    assert len(saga.payments(order_id)["charges"]) == 1
    assert saga.balance(customer) == 10_000 - 1_234


def test_two_relays_on_one_database_publish_every_row_with_every_effect_once(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(1_000_000), saga.stocked_sku(1_000)
    first, second = LogCursor(stack, "order-relay"), LogCursor(stack, "order-relay.2")
    stack.start("order-relay.2")
    try:
        stack.wait_ready("order-relay.2")
        orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(60)]
        for order_id in orders:
            saga.wait_for_status(order_id, "CONFIRMED")
    finally:
        stack.stop("order-relay.2")

    published = first.read() + second.read()
    for order_id in orders:
        assert published.count(f"order {order_id[:8]} | published OrderCreated") == 1
        assert len(saga.payments(order_id)["charges"]) == 1
    assert "published OrderCreated" in first.read()
    assert "published OrderCreated" in second.read()
    assert saga.balance(customer) == 1_000_000 - 60 * 100
    assert saga.product(sku)["available"] == 1_000 - 60
    wait_until(
        lambda: (
            sql(stack, "order", "SELECT count(*) FROM outbox WHERE published_at IS NULL") == [(0,)]
        )
    )


def published_all(stack: Stack, orders: list[str]) -> bool:
    """The order relay has published every row these orders have in the outbox so far."""
    return all(not pending_outbox(stack, "order", order_id) for order_id in orders)


def charged(stack: Stack, orders: list[str]) -> int:
    [(count,)] = sql(
        stack, "payment", "SELECT count(*) FROM charges WHERE order_id::text = ANY(%s)", orders
    )
    return int(count)


# Batching (shared/batching.py) is the same layer in both styles: one style's run shows it.
@pytest.mark.only_in(Mode.CHOREOGRAPHY)
def test_a_consumer_killed_between_a_batch_commit_and_its_acks_has_each_absorbed(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(20)
    charge_request, routing_key = saga.charge_request
    stack.stop("payment")
    orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(8)]
    wait_until(lambda: published_all(stack, orders), 15, "every OrderCreated published")

    # All eight wait in payment's queue and come at once: the first transaction takes several,
    # and payment dies after its commit, before acking any.
    stack.start("payment", FAULT_CRASH_AFTER_COMMIT=routing_key)
    try:
        assert stack.wait_exit("payment") == -signal.SIGKILL
        together = charged(stack, orders)
    finally:
        payment_log = LogCursor(stack, "payment")
        stack.stop("payment")  # whatever happened, payment as it normally runs
        stack.start("payment")
        stack.wait_ready("payment")
    assert together >= 2, f"{together} charge(s) committed before the crash: no batch was made"
    for order_id in orders:
        saga.wait_for_status(order_id, "CONFIRMED")
    payment_log.wait_for(f"duplicate {charge_request}", count=together)
    assert charged(stack, orders) == len(orders)
    assert saga.balance(customer) == 10_000 - 100 * len(orders)


@pytest.mark.only_in(Mode.CHOREOGRAPHY)
async def test_poison_and_a_failing_handler_in_a_batch_take_their_own_way_and_spare_the_rest(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(20)
    poison_id = f"poison-batched-{uuid.uuid4().hex[:6]}"
    stack.stop("payment")
    orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(6)]
    await asyncio.to_thread(
        wait_until, lambda: published_all(stack, orders), 15, "every OrderCreated published"
    )
    async with broker(stack) as exchange:
        await exchange.publish(
            aio_pika.Message(
                json.dumps(order_created_body(data={"order_id": "nope"})).encode(),
                message_id=poison_id,
                type="OrderCreated",
            ),
            routing_key="order.created",
            mandatory=True,
        )

    # The first charge applied fails once, in a batch: the batch is rolled back and each of
    # its messages applied again alone, that one included. The poison never joins a batch.
    payment_log = LogCursor(stack, "payment")
    stack.start("payment", FAULT_FAIL_HANDLER="charge_for_order:1")
    try:
        stack.wait_ready("payment")
        for order_id in orders:
            await asyncio.to_thread(saga.wait_for_status, order_id, "CONFIRMED")
        payment_log.wait_for("failed (InjectedFault): each alone")
        payment_log.wait_for(f"dead-lettered {poison_id} (OrderCreated) after 1 attempt(s)")
        assert charged(stack, orders) == len(orders)
        assert saga.balance(customer) == 10_000 - 100 * len(orders)
    finally:
        stack.stop("payment")
        stack.start("payment")
        stack.wait_ready("payment")
