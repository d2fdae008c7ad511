"""The order state machine: the one place that decides and records every status change.

The status is the saga's semantic lock. Every change is a conditional UPDATE (`WHERE status =
<from>`) on a row locked FOR UPDATE, so a concurrent writer (a second consumer, the reaper, a
customer's cancel) can never skip or undo a transition, and every change is recorded in
order_history with the message that caused it.
"""

from enum import StrEnum
from uuid import UUID

from shared.db import Sql


class Status(StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


ALLOWED: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PAID, Status.REJECTED, Status.CANCELLED}),
    Status.PAID: frozenset({Status.CONFIRMED, Status.REJECTED, Status.CANCELLED}),
    Status.CONFIRMED: frozenset(),
    Status.REJECTED: frozenset(),
    Status.CANCELLED: frozenset(),
}
TERMINAL = frozenset(status for status, targets in ALLOWED.items() if not targets)
IN_FLIGHT = frozenset(ALLOWED) - TERMINAL


def path(current: Status, target: Status) -> list[Status]:
    """The statuses an order passes through to reach `target`; empty if it must not move.

    Reservations follow payments, so an InventoryReserved that overtakes its PaymentSucceeded
    proves the payment: PENDING goes to CONFIRMED through PAID, and both steps are recorded.
    """
    if target in ALLOWED[current]:
        return [target]
    if current is Status.PENDING and target is Status.CONFIRMED:
        return [Status.PAID, Status.CONFIRMED]
    return []


class UnknownOrder(LookupError):
    pass


LOCK_ORDER = "SELECT status FROM orders WHERE order_id = %(order_id)s FOR UPDATE"
# Conditional: it changes nothing unless the order is still where this transaction saw it.
# The history row is written by the same statement, from the row the update returns: a step
# is recorded if and only if it happened.
MOVE = """
    WITH moved AS (
        UPDATE orders SET status = %(target)s, reason = %(reason)s, updated_at = now()
        WHERE order_id = %(order_id)s AND status = %(source)s
        RETURNING order_id, reason
    )
    INSERT INTO order_history (order_id, from_status, to_status, reason, message_id)
    SELECT order_id, %(source)s, %(target)s, reason, %(message_id)s FROM moved
"""


async def current_status(sql: Sql, order_id: UUID) -> Status:
    """Lock the order's row for this transaction and read its status."""
    status = await sql.scalar(LOCK_ORDER, order_id=order_id)
    if status is None:
        raise UnknownOrder(order_id)
    return Status(status)


async def move(
    sql: Sql,
    order_id: UUID,
    target: Status,
    *,
    reason: str | None = None,
    message_id: UUID | None = None,
) -> tuple[Status, list[Status]]:
    """Move the order towards `target`. Returns where it was and the statuses it went through."""
    current = await current_status(sql, order_id)
    steps = path(current, target)
    source = current
    for step in steps:
        moved = await sql.execute(
            MOVE,
            order_id=order_id,
            source=source,
            target=step,
            reason=reason,
            message_id=message_id,
        )
        if moved != 1:  # impossible under the row lock; refuse rather than guess
            raise RuntimeError(f"order {order_id} left {source} under a lock")
        source = step
    return current, steps


def describe(current: Status, steps: list[Status]) -> str:
    """`PENDING -> PAID`, or why nothing moved."""
    if not steps:
        return f"ignored, order is {current}"
    return " -> ".join([current, *steps])
