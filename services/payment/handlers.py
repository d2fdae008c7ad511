"""The payment service's reactions: charge for a new order, refund when the saga fails; and, in
orchestration mode, the same steps as commands (COMMAND_HANDLERS), by the same SQL.

Every handler runs under the saga's advisory lock (shared/inbox.py), so "was this order
cancelled?" and "was it charged?" cannot race with the answer changing. The SQL is written out
(shared/db.py): it is the heart of each step.
"""

from typing import Literal
from uuid import UUID, uuid4

from shared import cancellations
from shared.commands import ChargePayment, RefundPayment
from shared.events import (
    InventoryFailed,
    Item,
    OrderCancelled,
    OrderCreated,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)
from shared.metrics import COMPENSATIONS
from shared.uow import UnitOfWork, handlers

Declined = Literal["unknown_customer", "insufficient_funds"]

# The charge, in one statement under the saga's lock. It reads what payment already holds for
# the order, and debits only an order that is neither cancelled nor charged, and only if the
# money is there (the balance guard). The charge is recorded by the same statement, from the row
# the debit returns: a charge exists if and only if the money moved. `balance` is what the
# account holds after the debit; NULL when nothing moved.
CHARGE = """
    WITH known AS (
        SELECT EXISTS (SELECT FROM cancelled_orders WHERE order_id = %(order_id)s) AS cancelled,
               EXISTS (SELECT FROM charges WHERE order_id = %(order_id)s) AS charged
    ), debited AS (
        UPDATE accounts SET balance_cents = balance_cents - %(amount)s, updated_at = now()
        WHERE customer_id = %(customer_id)s AND balance_cents >= %(amount)s
          AND NOT (SELECT cancelled OR charged FROM known)
        RETURNING balance_cents
    ), recorded AS (
        INSERT INTO charges (payment_id, order_id, customer_id, amount_cents)
        SELECT %(payment_id)s, %(order_id)s, %(customer_id)s, %(amount)s FROM debited
    )
    SELECT cancelled, charged, (SELECT balance_cents FROM debited) AS balance FROM known
"""
BALANCE = "SELECT balance_cents FROM accounts WHERE customer_id = %(customer_id)s"
CHARGE_OF_ORDER = """
    SELECT payment_id, customer_id, amount_cents FROM charges WHERE order_id = %(order_id)s
"""
REFUND_OF_ORDER = """
    SELECT refund_id, amount_cents, reason FROM refunds WHERE order_id = %(order_id)s
"""
RECORD_REFUND = """
    INSERT INTO refunds (refund_id, payment_id, order_id, amount_cents, reason)
    VALUES (%(refund_id)s, %(payment_id)s, %(order_id)s, %(amount)s, %(reason)s)
"""
CREDIT = """
    UPDATE accounts SET balance_cents = balance_cents + %(amount)s, updated_at = now()
    WHERE customer_id = %(customer_id)s
"""


async def charge_for_order(uow: UnitOfWork, event: OrderCreated) -> str:
    return await _charge(uow, event.order_id, event.customer_id, event.total_cents, event.items)


async def charge_on_command(uow: UnitOfWork, command: ChargePayment) -> str:
    return await _charge(
        uow, command.order_id, command.customer_id, command.amount_cents, command.items
    )


async def _charge(
    uow: UnitOfWork, order_id: UUID, customer: str, amount: int, items: list[Item]
) -> str:
    sql = uow.sql
    payment_id = uuid4()
    charge = await sql.first(
        CHARGE, payment_id=payment_id, order_id=order_id, customer_id=customer, amount=amount
    )
    if charge.cancelled:
        uow.emit(PaymentFailed(order_id=order_id, reason="order_cancelled"))
        return "not charged, the order was cancelled first"
    if charge.charged:
        return "already charged"
    if charge.balance is None:
        known_balance = await sql.scalar(BALANCE, customer_id=customer)
        reason: Declined = "unknown_customer" if known_balance is None else "insufficient_funds"
        uow.emit(PaymentFailed(order_id=order_id, reason=reason))
        return f"declined {amount} for {customer} ({reason}, balance {known_balance or 0})"
    uow.emit(
        PaymentSucceeded(
            order_id=order_id,
            payment_id=payment_id,
            customer_id=customer,
            amount_cents=amount,
            items=items,
        )
    )
    return f"charged {amount} to {customer} (balance {charge.balance})"


async def refund_for_failed_inventory(uow: UnitOfWork, event: InventoryFailed) -> str:
    return await _refund(uow, event.order_id, event.reason)


async def refund_for_cancelled_order(uow: UnitOfWork, event: OrderCancelled) -> str:
    # Remembered for good: an OrderCreated that arrives after this is never charged.
    await cancellations.remember(uow.sql, event.order_id, event.reason)
    return await _refund(uow, event.order_id, "order_cancelled")


async def refund_on_command(uow: UnitOfWork, command: RefundPayment) -> str:
    # Remembered for good, as a cancellation is: a ChargePayment that arrives after this (it
    # waited out a retry, say) is refused, so the refund's answer stays true.
    await cancellations.remember(uow.sql, command.order_id, command.reason)
    return await _refund(uow, command.order_id, command.reason, answer=True)


async def _refund(uow: UnitOfWork, order_id: UUID, reason: str, answer: bool = False) -> str:
    """Credit the charge back once: a new refund record, the charge itself untouched.

    `answer`: the orchestrator asked, and sends the command again until it hears back, so every
    outcome replies: PaymentRefunded (now or before) or, never charged, PaymentFailed."""
    sql = uow.sql
    charge = await sql.first(CHARGE_OF_ORDER, order_id=order_id)
    if charge is None:
        if answer:
            uow.emit(PaymentFailed(order_id=order_id, reason="order_cancelled"))
        return "nothing to refund, never charged"
    refund = await sql.first(REFUND_OF_ORDER, order_id=order_id)
    if refund is not None:
        if answer:
            uow.emit(
                PaymentRefunded(
                    order_id=order_id,
                    payment_id=charge.payment_id,
                    refund_id=refund.refund_id,
                    amount_cents=refund.amount_cents,
                    reason=refund.reason,
                )
            )
        return "already refunded"
    refund_id = uuid4()
    await sql.execute(
        RECORD_REFUND,
        refund_id=refund_id,
        payment_id=charge.payment_id,
        order_id=order_id,
        amount=charge.amount_cents,
        reason=reason,
    )
    await sql.execute(CREDIT, customer_id=charge.customer_id, amount=charge.amount_cents)
    uow.emit(
        PaymentRefunded(
            order_id=order_id,
            payment_id=charge.payment_id,
            refund_id=refund_id,
            amount_cents=charge.amount_cents,
            reason=reason,
        )
    )
    uow.after_commit(COMPENSATIONS.labels("refund").inc)
    return f"refunded {charge.amount_cents} to {charge.customer_id} ({reason})"


HANDLERS = handlers(charge_for_order, refund_for_cancelled_order, refund_for_failed_inventory)
COMMAND_HANDLERS = handlers(charge_on_command, refund_on_command)
