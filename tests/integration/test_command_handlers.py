"""Payment's and inventory's command handlers (orchestration mode), each alone with a real unit
of work on a scratch database: the same SQL as their event handlers, and an answer to every
refund and release, so that the orchestrator, which sends them until it hears back, always
does."""

from uuid import uuid4

from services.inventory.handlers import release_on_command, reserve_on_command
from services.payment.handlers import charge_on_command, refund_on_command
from shared.commands import ChargePayment, RefundPayment, ReleaseInventory, ReserveInventory
from shared.db import Database
from shared.events import Item
from tests.integration.handling import apply, count_of
from tests.integration.test_inventory_handlers import sku_with, stock
from tests.integration.test_payment_handlers import balance, customer_with


def charge(customer: str, cents: int) -> ChargePayment:
    items = [Item(sku="shirt", quantity=1, unit_price_cents=cents)]
    return ChargePayment(order_id=uuid4(), customer_id=customer, amount_cents=cents, items=items)


async def test_a_charge_then_its_refund_sent_twice_answer_each_time(payment: Database) -> None:
    customer = await customer_with(payment, 5_000)
    command = charge(customer, 2_000)

    charged = await apply(payment, "payment", charge_on_command, command)
    refund = RefundPayment(order_id=command.order_id, reason="order_cancelled")
    first = await apply(payment, "payment", refund_on_command, refund)
    again = await apply(payment, "payment", refund_on_command, refund)  # sent again

    assert charged.types == ["PaymentSucceeded"]
    assert first.types == again.types == ["PaymentRefunded"]
    assert first.data()["refund_id"] == again.data()["refund_id"]
    assert again.what == "already refunded"
    assert await count_of(payment, "refunds", command.order_id) == 1
    assert await balance(payment, customer) == 5_000


async def test_a_refund_before_its_charge_answers_never_charged_and_the_charge_is_refused(
    payment: Database,
) -> None:
    customer = await customer_with(payment, 5_000)
    command = charge(customer, 2_000)

    refunded = await apply(
        payment, "payment", refund_on_command, RefundPayment(order_id=command.order_id, reason="x")
    )
    late = await apply(payment, "payment", charge_on_command, command)

    assert refunded.types == ["PaymentFailed"] and refunded.data()["reason"] == "order_cancelled"
    assert late.types == ["PaymentFailed"] and late.data()["reason"] == "order_cancelled"
    assert await count_of(payment, "charges", command.order_id) == 0
    assert await balance(payment, customer) == 5_000


async def test_a_reservation_then_its_release_sent_twice_answer_each_time(
    inventory: Database,
) -> None:
    sku = await sku_with(inventory, 4)
    order_id = uuid4()
    items = [Item(sku=sku, quantity=3, unit_price_cents=100)]

    reserved = await apply(
        inventory, "inventory", reserve_on_command, ReserveInventory(order_id=order_id, items=items)
    )
    release = ReleaseInventory(order_id=order_id, reason="order_cancelled")
    first = await apply(inventory, "inventory", release_on_command, release)
    again = await apply(inventory, "inventory", release_on_command, release)

    assert reserved.types == ["InventoryReserved"]
    assert first.types == again.types == ["InventoryReleased"]
    assert first.data()["reservation_id"] == again.data()["reservation_id"]
    assert again.what == "already released"
    assert await count_of(inventory, "releases", order_id) == 1
    assert await stock(inventory, sku) == (4, 0)


async def test_a_release_before_its_reservation_answers_and_the_reservation_is_refused(
    inventory: Database,
) -> None:
    sku = await sku_with(inventory, 4)
    order_id = uuid4()
    items = [Item(sku=sku, quantity=1, unit_price_cents=100)]

    released = await apply(
        inventory,
        "inventory",
        release_on_command,
        ReleaseInventory(order_id=order_id, reason="order_cancelled"),
    )
    late = await apply(
        inventory, "inventory", reserve_on_command, ReserveInventory(order_id=order_id, items=items)
    )

    assert released.types == ["InventoryFailed"]
    assert late.types == ["InventoryFailed"] and late.data()["reason"] == "order_cancelled"
    assert await count_of(inventory, "reservations", order_id) == 0
    assert await stock(inventory, sku) == (4, 0)
