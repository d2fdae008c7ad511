"""SPEC.md's flows through the ports the compose stack publishes, on the real engine: what a
client of `docker compose up` sees."""

import asyncio
import functools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest

from shared.dead_letters import read_letters
from shared.envelope import wrap
from shared.events import Item, OrderCreated
from tests.clients.api import SagaClient
from tests.clients.broker import broker, publish
from tests.compose.conftest import ComposeStack
from tests.polling import eventually, wait_until


@pytest.fixture(scope="module")
def saga(compose_stack: ComposeStack) -> Iterator[SagaClient[ComposeStack]]:
    with SagaClient(compose_stack) as client:
        yield client


def test_a_paid_and_stocked_order_is_confirmed(saga: SagaClient[ComposeStack]) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(5)
    order = saga.place_order(customer, (sku, 2, 1_500))

    saga.wait_for_status(order["order_id"], "CONFIRMED")

    assert saga.history(order["order_id"]) == ["PENDING", "PAID", "CONFIRMED"]
    assert saga.balance(customer) == 7_000
    assert saga.product(sku) == {"sku": sku, "available": 3, "reserved": 2}


def test_a_declined_payment_rejects_the_order_and_charges_nothing(
    saga: SagaClient[ComposeStack],
) -> None:
    customer, sku = saga.funded_customer(500), saga.stocked_sku(5)
    order = saga.place_order(customer, (sku, 1, 1_500))

    rejected = saga.wait_for_status(order["order_id"], "REJECTED")

    assert rejected["reason"] == "insufficient_funds"
    assert saga.payments(order["order_id"])["charges"] == []
    assert saga.balance(customer) == 500


def test_out_of_stock_is_refunded_and_reserves_nothing(saga: SagaClient[ComposeStack]) -> None:
    customer, plenty, scarce = (
        saga.funded_customer(10_000),
        saga.stocked_sku(9),
        saga.stocked_sku(1),
    )
    order = saga.place_order(customer, (plenty, 1, 500), (scarce, 2, 1_000))

    assert saga.wait_for_status(order["order_id"], "REJECTED")["reason"] == "out_of_stock"

    payments = wait_until(
        lambda: p if (p := saga.payments(order["order_id"]))["refunds"] else None,
        what="the refund",
    )
    assert [c["amount_cents"] for c in payments["charges"]] == [2_500]
    assert [(r["amount_cents"], r["reason"]) for r in payments["refunds"]] == [
        (2_500, "out_of_stock")
    ]
    assert saga.balance(customer) == 10_000
    assert saga.product(plenty)["available"] == 9 and saga.product(scarce)["available"] == 1


def test_a_customer_cancel_is_202_then_200_and_undoes_what_ran(
    saga: SagaClient[ComposeStack], compose_stack: ComposeStack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(5)
    compose = compose_stack.compose
    compose.run("stop", "payment")  # the saga waits at its first step, so the cancel comes first
    try:
        order_id = saga.place_order(customer, (sku, 1, 1_000))["order_id"]
        first = saga.order.post(f"/orders/{order_id}/cancel")
        again = saga.order.post(f"/orders/{order_id}/cancel")
    finally:
        compose.start("payment")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "CANCELLED"

    # Payment and inventory each answer OrderCancelled with a line naming the order, in the unit
    # of work that remembers the cancel: from then on nothing is charged or reserved for it, so
    # what they show is final, whichever order the events came in.
    def answered(service: str) -> bool:
        return any(
            f"order {order_id[:8]} |" in line and "for OrderCancelled" in line
            for line in compose_stack.logs(service)
        )

    for service in ("payment", "inventory"):
        wait_until(functools.partial(answered, service), 60, f"{service}: the cancel")
    payments = saga.payments(order_id)
    assert len(payments["charges"]) == len(payments["refunds"]) <= 1
    assert saga.balance(customer) == 10_000
    assert saga.product(sku) == {"sku": sku, "available": 5, "reserved": 0}
    assert all(r["status"] == "RELEASED" for r in saga.reservations(order_id))


def test_an_idempotency_key_gives_the_same_order_or_a_422(saga: SagaClient[ComposeStack]) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(5)
    body = {"customer_id": customer, "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 10}]}
    key = {"Idempotency-Key": uuid.uuid4().hex}

    first = saga.order.post("/orders", json=body, headers=key)
    again = saga.order.post("/orders", json=body, headers=key)
    other = saga.order.post("/orders", json={**body, "customer_id": "else"}, headers=key)

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 422)
    assert again.json()["order_id"] == first.json()["order_id"]


async def test_poison_goes_to_the_dlq_with_its_reason(
    saga: SagaClient[ComposeStack], compose_stack: ComposeStack
) -> None:
    message_id = f"poison-{uuid.uuid4().hex[:8]}"
    async with broker(compose_stack) as exchange:
        await exchange.publish(
            aio_pika.Message(b"\x00 not json", message_id=message_id, type="OrderCreated"),
            routing_key="order.created",
            mandatory=True,
        )

    async def dead_letter() -> str | None:
        connection = await aio_pika.connect(compose_stack.config.amqp_url)
        async with connection:
            channel = await connection.channel()
            for letter in await read_letters(channel, "payment", compose_stack.config.mode):
                if letter.id == message_id:
                    await letter.message.ack()  # taken out: the queue is left as found
                    return letter.reason
        return None

    reason = await eventually(dead_letter, what="the poison in payment.events.dlq")
    assert reason == "not_json"
    # The service went on consuming.
    test_a_paid_and_stocked_order_is_confirmed(saga)


async def test_ten_deliveries_of_one_message_charge_once(
    saga: SagaClient[ComposeStack], compose_stack: ComposeStack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(5)
    event = OrderCreated(
        order_id=uuid.uuid4(),
        customer_id=customer,
        items=[Item(sku=sku, quantity=1, unit_price_cents=700)],
        total_cents=700,
        deadline_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    envelope = wrap(event, producer="test", causation_id=None)

    async with broker(compose_stack) as exchange:
        for _ in range(10):
            await publish(exchange, envelope, "order.created")

    duplicate = f"duplicate OrderCreated {str(envelope.message_id)[:8]} ignored"

    def nine_duplicates() -> list[str] | None:
        lines = compose_stack.logs("payment")
        return lines if sum(duplicate in line for line in lines) >= 9 else None

    logs = await asyncio.to_thread(wait_until, nine_duplicates, 30, "nine duplicates logged")
    assert sum("charged 700" in line and str(event.order_id)[:8] in line for line in logs) == 1
    assert saga.balance(customer) == 9_300
