"""Inventory's handlers, each alone with a real unit of work on a scratch database: every line
reserved or none, a release at most once, and nothing for an order cancelled first."""

from uuid import UUID, uuid4

import pytest

from services.inventory.handlers import release_for_cancelled_order, reserve_stock
from shared.db import Database
from shared.events import Item, OrderCancelled, PaymentSucceeded
from tests.clients.api import new_id
from tests.clients.database import rows
from tests.integration.handling import apply, count_of, outbox_of


async def sku_with(database: Database, units: int) -> str:
    sku = new_id("sku")
    async with database.connect(autocommit=True) as sql:
        await sql.execute(
            "INSERT INTO products (sku, available, reserved) VALUES (%(sku)s, %(units)s, 0)",
            sku=sku,
            units=units,
        )
    return sku


async def stock(database: Database, sku: str) -> tuple[int, int]:
    [row] = await rows(
        database, "SELECT available, reserved FROM products WHERE sku = %(sku)s", sku=sku
    )
    return row.available, row.reserved


def paid(*lines: tuple[str, int], order_id: UUID | None = None) -> PaymentSucceeded:
    items = [Item(sku=sku, quantity=quantity, unit_price_cents=100) for sku, quantity in lines]
    return PaymentSucceeded(
        order_id=order_id or uuid4(),
        payment_id=uuid4(),
        customer_id="alice",
        amount_cents=100 * sum(quantity for _, quantity in lines),
        items=items,
    )


async def test_every_line_is_reserved_and_announced(inventory: Database) -> None:
    shirt, mug = await sku_with(inventory, 5), await sku_with(inventory, 3)
    event = paid((shirt, 2), (mug, 1), (shirt, 1))  # a sku may come twice: its lines add up

    handled = await apply(inventory, "inventory", reserve_stock, event)

    in_lock_order = sorted({shirt: 3, mug: 1}.items())
    assert handled.what == "reserved " + ", ".join(f"{n} x {sku}" for sku, n in in_lock_order)
    assert handled.types == ["InventoryReserved"]
    assert handled.data()["items"] == [item.model_dump() for item in event.items]
    assert await stock(inventory, shirt) == (2, 3)
    assert await stock(inventory, mug) == (2, 1)
    assert await count_of(inventory, "reservations", event.order_id) == 1
    assert await outbox_of(inventory, event.order_id) == [
        ("InventoryReserved", str(handled.cause.message_id))
    ]


@pytest.mark.parametrize("missing", ["out_of_stock", "unknown_sku"])
async def test_one_line_short_reserves_nothing_at_all(inventory: Database, missing: str) -> None:
    plenty = await sku_with(inventory, 100)
    short = await sku_with(inventory, 1) if missing == "out_of_stock" else new_id("ghost")
    event = paid((plenty, 5), (short, 2))

    handled = await apply(inventory, "inventory", reserve_stock, event)

    assert handled.types == ["InventoryFailed"]
    assert (handled.data()["reason"], handled.data()["sku"]) == (missing, short)
    assert await stock(inventory, plenty) == (100, 0)
    if missing == "out_of_stock":
        assert await stock(inventory, short) == (1, 0)
        assert handled.what == f"cannot reserve: {short} short, 1 available, 2 wanted"
    else:
        assert handled.what == f"cannot reserve: unknown sku {short}"
    assert await count_of(inventory, "reservations", event.order_id) == 0


async def test_another_payment_for_a_reserved_order_reserves_nothing(inventory: Database) -> None:
    shirt = await sku_with(inventory, 5)
    event = paid((shirt, 2))
    await apply(inventory, "inventory", reserve_stock, event)

    again = await apply(inventory, "inventory", reserve_stock, event)

    assert (again.what, again.emitted) == ("already reserved", [])
    assert await stock(inventory, shirt) == (3, 2)


async def test_a_cancel_releases_the_reservation_once_with_a_new_record(
    inventory: Database,
) -> None:
    shirt = await sku_with(inventory, 5)
    event = paid((shirt, 2))
    reserved = await apply(inventory, "inventory", reserve_stock, event)
    cancel = OrderCancelled(order_id=event.order_id, reason="timeout")

    released = await apply(inventory, "inventory", release_for_cancelled_order, cancel)
    again = await apply(inventory, "inventory", release_for_cancelled_order, cancel)

    assert released.what == f"released 2 x {shirt}"
    assert released.types == ["InventoryReleased"]
    assert released.data()["reservation_id"] == reserved.data()["reservation_id"]
    assert released.data()["reason"] == "order_cancelled"
    assert (again.what, again.emitted) == ("already released", [])
    assert await stock(inventory, shirt) == (5, 0)
    # The reservation stays: it reads as RELEASED because a release points at it.
    assert await count_of(inventory, "reservations", event.order_id) == 1
    assert await count_of(inventory, "releases", event.order_id) == 1


async def test_a_payment_after_the_cancel_never_reserves(inventory: Database) -> None:
    shirt = await sku_with(inventory, 5)
    event = paid((shirt, 2))

    cancelled = await apply(
        inventory,
        "inventory",
        release_for_cancelled_order,
        OrderCancelled(order_id=event.order_id, reason="customer"),
    )
    late = await apply(inventory, "inventory", reserve_stock, event)

    assert (cancelled.what, cancelled.emitted) == ("nothing to release, never reserved", [])
    assert late.what == "not reserved, the order was cancelled first"
    assert late.types == ["InventoryFailed"] and late.data()["reason"] == "order_cancelled"
    assert await stock(inventory, shirt) == (5, 0)
