"""The order state machine: the one place that decides and records every status change.

The status is the saga's semantic lock. Every change is a conditional UPDATE (`WHERE status =
<from>`) on a row locked FOR UPDATE, or locked by that very update, so a concurrent writer (a
second consumer, the reaper, a customer's cancel) can never skip or undo a transition, and every
change is recorded in order_history with the message that caused it.
"""

from enum import StrEnum
from typing import NamedTuple
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
# is recorded if and only if it happened. It returns the order's age (for the saga's duration,
# services/order/metrics.py), or no row when nothing moved.
MOVE = """
    WITH moved AS (
        UPDATE orders SET status = %(target)s, reason = %(reason)s, updated_at = now()
        WHERE order_id = %(order_id)s AND status = %(source)s
        RETURNING order_id, reason, created_at
    ), recorded AS (
        INSERT INTO order_history (order_id, from_status, to_status, reason, message_id)
        SELECT order_id, %(source)s, %(target)s, reason, %(message_id)s FROM moved
    )
    SELECT extract(epoch FROM now() - created_at) AS age_seconds FROM moved
"""
# Where a happy saga's messages find the order: tried first, by MOVE alone. Its UPDATE locks
# the row against every other writer of it until commit, as LOCK_ORDER would (PostgreSQL's FOR
# NO KEY UPDATE: only the foreign keys' KEY SHARE of the history's insert is let through), and
# one that waited for the lock sees the row as its holder left it. An order found elsewhere,
# or not at all, takes the long way: locked, read, and moved along its path.
USUAL_SOURCE = {Status.PAID: Status.PENDING, Status.CONFIRMED: Status.PAID}


class Moved(NamedTuple):
    was: Status  # where the order was
    steps: list[Status]  # the statuses it went through; empty if it did not move
    age_seconds: float  # since it was placed, by the database's clock (0 if it did not move)


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
) -> Moved:
    """Move the order towards `target`. Raises UnknownOrder."""

    async def step(source: Status, to: Status) -> float | None:
        """The order's age if it moved from `source` to `to`; None if it was not at `source`."""
        row = await sql.first(
            MOVE, order_id=order_id, source=source, target=to, reason=reason, message_id=message_id
        )
        return None if row is None else float(row.age_seconds)

    usual = USUAL_SOURCE.get(target)
    if usual is not None and (age := await step(usual, target)) is not None:
        return Moved(usual, [target], age)
    current = await current_status(sql, order_id)
    steps = path(current, target)
    source, age = current, 0.0
    for to in steps:
        moved = await step(source, to)
        if moved is None:  # impossible under the row lock; refuse rather than guess
            raise RuntimeError(f"order {order_id} left {source} under a lock")
        source, age = to, moved
    return Moved(current, steps, age)


def describe(current: Status, steps: list[Status]) -> str:
    """`PENDING -> PAID`, or why nothing moved."""
    if not steps:
        return f"ignored, order is {current}"
    return " -> ".join([current, *steps])
