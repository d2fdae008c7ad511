"""The order service's write side alone, on a scratch database with real units of work: its
commands (place, cancel), its handlers (the saga's replies) and the reaper."""

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from prometheus_client import REGISTRY

from services.order.commands import (
    IdempotencyKeyReused,
    NotCancellable,
    PlaceOrder,
    cancel_order,
    place_order,
)
from services.order.coordination import Choreography
from services.order.handlers import (
    confirm_order,
    mark_paid,
    reject_for_declined_payment,
    reject_for_failed_inventory,
)
from services.order.reaper import cancel_overdue
from services.order.state import Status, UnknownOrder
from shared.db import Database
from shared.events import (
    InventoryFailed,
    InventoryReserved,
    Item,
    PaymentFailed,
    PaymentSucceeded,
)
from shared.uow import UnitOfWork
from tests.clients.api import new_id
from tests.clients.database import rows, scratch_database, waited_on
from tests.integration.handling import apply, outbox_of

LINES = [Item(sku="shirt", quantity=2, unit_price_cents=1_500)]
CHOREOGRAPHY = Choreography()


@pytest.fixture(scope="module")
async def orders() -> AsyncIterator[Database]:
    async with scratch_database("order") as database:
        yield database


async def placed(database: Database, deadline_seconds: float = 30, key: str | None = None) -> UUID:
    async with UnitOfWork(database, "order") as uow:
        result = await place_order(
            uow, PlaceOrder(customer_id="alice", items=LINES), deadline_seconds, key, CHOREOGRAPHY
        )
        await uow.commit()
    return UUID(str(result.order.order_id))


async def history(database: Database, order_id: UUID) -> list[tuple[str | None, str, str | None]]:
    found = await rows(
        database,
        """SELECT from_status, to_status, message_id::text AS message_id FROM order_history
           WHERE order_id = %(o)s ORDER BY id""",
        o=order_id,
    )
    return [(row.from_status, row.to_status, row.message_id) for row in found]


def payment_succeeded(order_id: UUID) -> PaymentSucceeded:
    return PaymentSucceeded(
        order_id=order_id, payment_id=uuid4(), customer_id="alice", amount_cents=3_000, items=LINES
    )


async def test_placing_an_order_records_it_pending_and_announces_it(orders: Database) -> None:
    order_id = await placed(orders)

    [order] = await rows(
        orders, "SELECT status, total_cents FROM orders WHERE order_id = %(o)s", o=order_id
    )
    assert (order.status, order.total_cents) == ("PENDING", 3_000)
    assert await history(orders, order_id) == [(None, "PENDING", None)]
    [(kind, cause)] = await outbox_of(orders, order_id)
    assert (kind, cause) == ("OrderCreated", None)


async def test_an_idempotency_key_returns_the_same_order_or_refuses_another_body(
    orders: Database,
) -> None:
    key = new_id("key")
    first = await placed(orders, key=key)
    again = await placed(orders, key=key)

    assert again == first
    assert len(await outbox_of(orders, first)) == 1  # one OrderCreated, not two
    async with UnitOfWork(orders, "order") as uow:
        other = PlaceOrder(customer_id="bob", items=LINES)
        with pytest.raises(IdempotencyKeyReused):
            await place_order(uow, other, 30, key, CHOREOGRAPHY)


def duration_observed(outcome: str) -> tuple[float, float]:
    """saga_duration_seconds for `outcome` so far in this process: how many, and their sum."""
    labels = {"outcome": outcome}
    count = REGISTRY.get_sample_value("saga_duration_seconds_count", labels) or 0.0
    return count, REGISTRY.get_sample_value("saga_duration_seconds_sum", labels) or 0.0


async def test_the_saga_replies_move_the_order_to_confirmed(orders: Database) -> None:
    order_id = await placed(orders)
    count, total = duration_observed("confirmed")

    paid = await apply(orders, "order", mark_paid, payment_succeeded(order_id))
    confirmed = await apply(
        orders,
        "order",
        confirm_order,
        InventoryReserved(order_id=order_id, reservation_id=uuid4(), items=LINES),
    )

    assert (paid.what, paid.emitted) == ("PENDING -> PAID", [])
    assert confirmed.what == "PAID -> CONFIRMED"
    assert confirmed.types == ["OrderConfirmed"]
    assert await history(orders, order_id) == [
        (None, "PENDING", None),
        ("PENDING", "PAID", str(paid.cause.message_id)),
        ("PAID", "CONFIRMED", str(confirmed.cause.message_id)),
    ]
    # The saga's duration, from the order's age as the confirming move returned it.
    after, after_total = duration_observed("confirmed")
    assert after == count + 1
    assert 0 < after_total - total < 30


async def test_a_payment_that_waits_on_a_cancel_s_row_lock_finds_the_order_cancelled(
    orders: Database,
) -> None:
    # The reply's first try is the one conditional UPDATE from PENDING: it waits for the
    # cancel's lock, then finds the row moved and takes the long way, which ignores it.
    order_id = await placed(orders)
    async with UnitOfWork(orders, "order") as cancelling:
        await cancel_order(cancelling, order_id, "customer", CHOREOGRAPHY)
        reply = asyncio.ensure_future(
            apply(orders, "order", mark_paid, payment_succeeded(order_id))
        )
        await waited_on(orders, cancelling.sql)
        assert not reply.done(), "the reply did not wait for the order's row"
        await cancelling.commit()
    handled = await reply

    assert handled.what == "ignored, order is CANCELLED"
    assert await history(orders, order_id) == [
        (None, "PENDING", None),
        ("PENDING", "CANCELLED", None),
    ]


async def test_a_choreographed_cancel_never_touches_the_orchestrator_s_sagas(
    orders: Database,
) -> None:
    # Whoever holds saga_instances (an orchestrated run's reaper, say), a choreographed cancel
    # does not wait for it: it neither reads nor locks the orchestrator's rows.
    order_id = await placed(orders)
    async with orders.connect() as holder:
        await holder.execute("LOCK TABLE saga_instances IN ACCESS EXCLUSIVE MODE")
        async with UnitOfWork(orders, "order") as uow:
            await uow.sql.execute("SET LOCAL lock_timeout = '2s'")
            cancelled = await cancel_order(uow, order_id, "customer", CHOREOGRAPHY)
            await uow.commit()
    assert cancelled == (Status.PENDING, [Status.CANCELLED])


async def test_a_reservation_that_overtakes_its_payment_confirms_through_paid(
    orders: Database,
) -> None:
    order_id = await placed(orders)
    reserved = InventoryReserved(order_id=order_id, reservation_id=uuid4(), items=LINES)

    confirmed = await apply(orders, "order", confirm_order, reserved)
    late = await apply(orders, "order", mark_paid, payment_succeeded(order_id))

    assert confirmed.what == "PENDING -> PAID -> CONFIRMED"
    assert (late.what, late.emitted) == ("ignored, order is CONFIRMED", [])


@pytest.mark.parametrize(
    ("handler", "event"),
    [
        (
            reject_for_declined_payment,
            lambda o: PaymentFailed(order_id=o, reason="unknown_customer"),
        ),
        (
            reject_for_failed_inventory,
            lambda o: InventoryFailed(order_id=o, reason="out_of_stock", sku="shirt"),
        ),
    ],
)
async def test_a_failed_step_rejects_the_order_with_its_reason(
    orders: Database, handler: object, event: object
) -> None:
    order_id = await placed(orders)
    failure = event(order_id)  # type: ignore[operator]

    rejected = await apply(orders, "order", handler, failure)  # type: ignore[arg-type]
    again = await apply(orders, "order", handler, failure)  # type: ignore[arg-type]

    assert rejected.what == f"PENDING -> REJECTED ({failure.reason})"
    assert rejected.types == ["OrderRejected"] and rejected.data()["reason"] == failure.reason
    assert (again.what, again.emitted) == ("ignored, order is REJECTED", [])


async def test_a_reply_for_an_unknown_order_is_ignored(orders: Database) -> None:
    handled = await apply(orders, "order", mark_paid, payment_succeeded(uuid4()))

    assert (handled.what, handled.emitted) == ("ignored, unknown order", [])


async def test_a_cancel_moves_an_order_in_flight_once_and_refuses_one_past_the_pivot(
    orders: Database,
) -> None:
    pending, confirmed = await placed(orders), await placed(orders)
    await apply(
        orders,
        "order",
        confirm_order,
        InventoryReserved(order_id=confirmed, reservation_id=uuid4(), items=LINES),
    )
    async with UnitOfWork(orders, "order") as uow:
        assert await cancel_order(uow, pending, "customer", CHOREOGRAPHY) == (
            Status.PENDING,
            [Status.CANCELLED],
        )
        assert await cancel_order(uow, pending, "customer", CHOREOGRAPHY) == (Status.CANCELLED, [])
        with pytest.raises(NotCancellable):
            await cancel_order(uow, confirmed, "customer", CHOREOGRAPHY)
        with pytest.raises(UnknownOrder):
            await cancel_order(uow, uuid4(), "customer", CHOREOGRAPHY)
        assert [envelope.type for envelope in uow.emitted] == ["OrderCancelled"]
        await uow.commit()
    kinds = [kind for kind, _ in await outbox_of(orders, pending)]
    assert kinds == ["OrderCreated", "OrderCancelled"]


async def test_the_reaper_cancels_what_is_overdue_and_nothing_else(orders: Database) -> None:
    overdue, on_time = await placed(orders, deadline_seconds=-1), await placed(orders)

    assert await cancel_overdue(orders, CHOREOGRAPHY) >= 1

    statuses = {
        row.order_id: row.status
        for row in await rows(
            orders,
            "SELECT order_id, status FROM orders WHERE order_id = ANY(%(ids)s)",
            ids=[overdue, on_time],
        )
    }
    assert statuses == {overdue: "CANCELLED", on_time: "PENDING"}
    [(_, _), (kind, _)] = await outbox_of(orders, overdue)
    assert kind == "OrderCancelled"
    [(reason,)] = await rows(orders, "SELECT reason FROM orders WHERE order_id = %(o)s", o=overdue)
    assert reason == "timeout"
