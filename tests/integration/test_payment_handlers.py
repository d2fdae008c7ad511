"""Payment's handlers, each alone with a real unit of work on a scratch database: what each
writes, what it emits, and what it refuses to do twice."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from services.payment.handlers import (
    charge_for_order,
    refund_for_cancelled_order,
    refund_for_failed_inventory,
)
from shared.db import Database
from shared.envelope import wrap
from shared.events import InventoryFailed, Item, OrderCancelled, OrderCreated
from shared.uow import UnitOfWork
from tests.clients.api import new_id
from tests.clients.database import rows
from tests.integration.handling import apply, outbox_of


async def customer_with(database: Database, cents: int) -> str:
    customer = new_id("cust")
    async with database.connect(autocommit=True) as sql:
        await sql.execute(
            "INSERT INTO accounts (customer_id, balance_cents) VALUES (%(c)s, %(cents)s)",
            c=customer,
            cents=cents,
        )
    return customer


async def balance(database: Database, customer: str) -> int:
    [(cents,)] = await rows(
        database, "SELECT balance_cents FROM accounts WHERE customer_id = %(c)s", c=customer
    )
    return int(cents)


def order_created(customer: str, cents: int, order_id: UUID | None = None) -> OrderCreated:
    return OrderCreated(
        order_id=order_id or uuid4(),
        customer_id=customer,
        items=[Item(sku="shirt", quantity=1, unit_price_cents=cents)],
        total_cents=cents,
        deadline_at=datetime.now(UTC) + timedelta(seconds=30),
    )


async def test_a_funded_customer_is_charged_and_payment_succeeds(payment: Database) -> None:
    customer = await customer_with(payment, 10_000)
    event = order_created(customer, 3_000)

    handled = await apply(payment, "payment", charge_for_order, event)

    assert handled.what == f"charged 3000 to {customer} (balance 7000)"
    assert handled.types == ["PaymentSucceeded"]
    succeeded = handled.data()
    assert succeeded["amount_cents"] == 3_000 and succeeded["customer_id"] == customer
    assert succeeded["items"] == [{"sku": "shirt", "quantity": 1, "unit_price_cents": 3_000}]
    assert await balance(payment, customer) == 7_000
    charges = await rows(
        payment,
        "SELECT payment_id, amount_cents FROM charges WHERE order_id = %(o)s",
        o=event.order_id,
    )
    assert [(str(c.payment_id), c.amount_cents) for c in charges] == [
        (succeeded["payment_id"], 3_000)
    ]
    # The event left through the outbox, in the same commit, caused by the OrderCreated.
    assert await outbox_of(payment, event.order_id) == [
        ("PaymentSucceeded", str(handled.cause.message_id))
    ]


@pytest.mark.parametrize(
    ("cents", "reason"), [(500, "insufficient_funds"), (None, "unknown_customer")]
)
async def test_a_customer_who_cannot_pay_is_declined_and_nothing_moves(
    payment: Database, cents: int | None, reason: str
) -> None:
    customer = await customer_with(payment, cents) if cents is not None else new_id("nobody")

    handled = await apply(payment, "payment", charge_for_order, order_created(customer, 1_500))

    assert handled.types == ["PaymentFailed"]
    assert handled.data()["reason"] == reason
    assert handled.what.startswith(f"declined 1500 for {customer} ({reason}")
    if cents is not None:
        assert await balance(payment, customer) == cents
    assert not await rows(payment, "SELECT 1 FROM charges WHERE customer_id = %(c)s", c=customer)


async def test_another_order_created_for_a_charged_order_charges_nothing(payment: Database) -> None:
    customer = await customer_with(payment, 10_000)
    event = order_created(customer, 1_000)
    await apply(payment, "payment", charge_for_order, event)

    again = await apply(payment, "payment", charge_for_order, event)  # a new message id

    assert (again.what, again.emitted) == ("already charged", [])
    assert await balance(payment, customer) == 9_000


async def test_an_order_cancelled_before_it_was_created_is_never_charged(payment: Database) -> None:
    customer = await customer_with(payment, 10_000)
    event = order_created(customer, 1_000)

    cancelled = await apply(
        payment,
        "payment",
        refund_for_cancelled_order,
        OrderCancelled(order_id=event.order_id, reason="timeout"),
    )
    late = await apply(payment, "payment", charge_for_order, event)

    assert (cancelled.what, cancelled.emitted) == ("nothing to refund, never charged", [])
    assert late.what == "not charged, the order was cancelled first"
    assert late.types == ["PaymentFailed"] and late.data()["reason"] == "order_cancelled"
    assert await balance(payment, customer) == 10_000
    assert await rows(
        payment, "SELECT reason FROM cancelled_orders WHERE order_id = %(o)s", o=event.order_id
    ) == [("timeout",)]


@pytest.mark.parametrize(
    ("handler", "cause", "reason"),
    [
        (refund_for_failed_inventory, "inventory", "out_of_stock"),
        (refund_for_cancelled_order, "cancel", "order_cancelled"),
    ],
)
async def test_a_charge_is_refunded_once_with_a_new_record(
    payment: Database, handler: object, cause: str, reason: str
) -> None:
    customer = await customer_with(payment, 10_000)
    event = order_created(customer, 2_500)
    charged = await apply(payment, "payment", charge_for_order, event)
    failure = (
        InventoryFailed(order_id=event.order_id, reason="out_of_stock", sku="shirt")
        if cause == "inventory"
        else OrderCancelled(order_id=event.order_id, reason="customer")
    )

    refunded = await apply(payment, "payment", handler, failure)  # type: ignore[arg-type]
    again = await apply(payment, "payment", handler, failure)  # type: ignore[arg-type]

    assert refunded.what == f"refunded 2500 to {customer} ({reason})"
    assert refunded.types == ["PaymentRefunded"]
    assert refunded.data()["payment_id"] == charged.data()["payment_id"]
    assert (refunded.data()["amount_cents"], refunded.data()["reason"]) == (2_500, reason)
    assert (again.what, again.emitted) == ("already refunded", [])
    assert await balance(payment, customer) == 10_000
    # The charge is untouched: the refund is a record of its own.
    assert (
        len(await rows(payment, "SELECT 1 FROM charges WHERE order_id = %(o)s", o=event.order_id))
        == 1
    )
    assert (
        len(await rows(payment, "SELECT 1 FROM refunds WHERE order_id = %(o)s", o=event.order_id))
        == 1
    )


async def test_an_inventory_failure_for_an_order_never_charged_refunds_nothing(
    payment: Database,
) -> None:
    failure = InventoryFailed(order_id=uuid4(), reason="unknown_sku", sku="mug")

    handled = await apply(payment, "payment", refund_for_failed_inventory, failure)

    assert (handled.what, handled.emitted) == ("nothing to refund, never charged", [])


async def test_the_inbox_refuses_the_same_message_twice(payment: Database) -> None:
    envelope = wrap(OrderCancelled(order_id=uuid4(), reason="timeout"), "test", None)
    for expected in (True, False):
        async with UnitOfWork(payment, "payment") as uow:
            assert await uow.accept(envelope) is expected
            await uow.commit()
