"""The payment service's reactions: charge for a new order, refund when the saga fails.

Every handler runs under the saga's advisory lock (shared/uow.py), so "was this order
cancelled?" and "was it charged?" cannot race with the answer changing.
"""

from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from services.payment.tables import accounts, cancelled_orders, charges, refunds
from shared.consumer import Handler
from shared.events import (
    InventoryFailed,
    OrderCancelled,
    OrderCreated,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)
from shared.uow import UnitOfWork


async def charge_for_order(uow: UnitOfWork, event: OrderCreated) -> str:
    conn, amount = uow.conn, event.total_cents
    if await conn.scalar(
        sa.select(sa.literal(True)).where(cancelled_orders.c.order_id == event.order_id)
    ):
        uow.emit(PaymentFailed(order_id=event.order_id, reason="order_cancelled"))
        return "not charged, the order was cancelled first"
    if await conn.scalar(
        sa.select(charges.c.payment_id).where(charges.c.order_id == event.order_id)
    ):
        return "already charged"
    # The balance guard: the debit happens only if the money is there, in one statement.
    balance = await conn.scalar(
        accounts.update()
        .where(accounts.c.customer_id == event.customer_id, accounts.c.balance_cents >= amount)
        .values(balance_cents=accounts.c.balance_cents - amount, updated_at=sa.func.now())
        .returning(accounts.c.balance_cents)
    )
    if balance is None:
        known = await conn.scalar(
            sa.select(accounts.c.balance_cents).where(accounts.c.customer_id == event.customer_id)
        )
        reason = "unknown_customer" if known is None else "insufficient_funds"
        uow.emit(PaymentFailed(order_id=event.order_id, reason=reason))
        return f"declined {amount} for {event.customer_id} ({reason}, balance {known or 0})"
    payment_id = uuid4()
    await conn.execute(
        charges.insert().values(
            payment_id=payment_id,
            order_id=event.order_id,
            customer_id=event.customer_id,
            amount_cents=amount,
        )
    )
    uow.emit(
        PaymentSucceeded(
            order_id=event.order_id,
            payment_id=payment_id,
            customer_id=event.customer_id,
            amount_cents=amount,
            items=event.items,
        )
    )
    return f"charged {amount} to {event.customer_id} (balance {balance})"


async def refund_for_failed_inventory(uow: UnitOfWork, event: InventoryFailed) -> str:
    return await _refund(uow, event.order_id, event.reason)


async def refund_for_cancelled_order(uow: UnitOfWork, event: OrderCancelled) -> str:
    # Remembered for good: an OrderCreated that arrives after this is never charged.
    await uow.conn.execute(
        insert(cancelled_orders)
        .values(order_id=event.order_id, reason=event.reason)
        .on_conflict_do_nothing()
    )
    return await _refund(uow, event.order_id, "order_cancelled")


async def _refund(uow: UnitOfWork, order_id: UUID, reason: str) -> str:
    """Credit the charge back once: a new refund record, the charge itself untouched."""
    conn = uow.conn
    charge = (
        await conn.execute(sa.select(charges).where(charges.c.order_id == order_id))
    ).one_or_none()
    if charge is None:
        return "nothing to refund, never charged"
    if await conn.scalar(sa.select(refunds.c.refund_id).where(refunds.c.order_id == order_id)):
        return "already refunded"
    refund_id = uuid4()
    await conn.execute(
        refunds.insert().values(
            refund_id=refund_id,
            payment_id=charge.payment_id,
            order_id=order_id,
            amount_cents=charge.amount_cents,
            reason=reason,
        )
    )
    await conn.execute(
        accounts.update()
        .where(accounts.c.customer_id == charge.customer_id)
        .values(
            balance_cents=accounts.c.balance_cents + charge.amount_cents, updated_at=sa.func.now()
        )
    )
    uow.emit(
        PaymentRefunded(
            order_id=order_id,
            payment_id=charge.payment_id,
            refund_id=refund_id,
            amount_cents=charge.amount_cents,
            reason=reason,
        )
    )
    return f"refunded {charge.amount_cents} to {charge.customer_id} ({reason})"


HANDLERS: dict[str, Handler] = {
    "order.created": charge_for_order,
    "order.cancelled": refund_for_cancelled_order,
    "inventory.failed": refund_for_failed_inventory,
}
