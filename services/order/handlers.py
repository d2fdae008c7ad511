"""The order service's reactions to the saga's events. Each moves the order through the state
machine (services/order/state.py) and announces a terminal outcome. The orchestrator
(services/order/orchestrator.py) moves the order by the same three steps: `pay`, `confirm` and
`reject`."""

from uuid import UUID

from services.order import metrics
from services.order.state import Moved, Status, UnknownOrder, describe, move
from shared.events import (
    InventoryFailed,
    InventoryReserved,
    OrderConfirmed,
    OrderRejected,
    PaymentFailed,
    PaymentSucceeded,
)
from shared.uow import UnitOfWork, handlers


async def _move(
    uow: UnitOfWork, order_id: UUID, target: Status, reason: str | None = None
) -> tuple[str, Moved | None]:
    """What happened, for the log line, and the move if it reached `target` now."""
    cause = uow.cause.message_id if uow.cause else None
    try:
        moved = await move(uow.sql, order_id, target, reason=reason, message_id=cause)
    except UnknownOrder:
        return "ignored, unknown order", None
    reached = bool(moved.steps) and moved.steps[-1] is target
    return describe(moved.was, moved.steps), moved if reached else None


async def pay(uow: UnitOfWork, order_id: UUID) -> str:
    what, _ = await _move(uow, order_id, Status.PAID)
    return what


async def confirm(uow: UnitOfWork, order_id: UUID) -> str:
    what, reached = await _move(uow, order_id, Status.CONFIRMED)
    if reached:
        uow.emit(OrderConfirmed(order_id=order_id))
        metrics.finished(uow, Status.CONFIRMED, None, reached.age_seconds)
    return what


async def reject(uow: UnitOfWork, order_id: UUID, reason: str) -> str:
    what, reached = await _move(uow, order_id, Status.REJECTED, reason)
    if reached:
        uow.emit(OrderRejected(order_id=order_id, reason=reason))
        metrics.finished(uow, Status.REJECTED, reason, reached.age_seconds)
        return f"{what} ({reason})"
    return what


async def mark_paid(uow: UnitOfWork, event: PaymentSucceeded) -> str:
    return await pay(uow, event.order_id)


async def confirm_order(uow: UnitOfWork, event: InventoryReserved) -> str:
    return await confirm(uow, event.order_id)


async def reject_for_declined_payment(uow: UnitOfWork, event: PaymentFailed) -> str:
    return await reject(uow, event.order_id, event.reason)


async def reject_for_failed_inventory(uow: UnitOfWork, event: InventoryFailed) -> str:
    return await reject(uow, event.order_id, event.reason)


HANDLERS = handlers(
    mark_paid, reject_for_declined_payment, confirm_order, reject_for_failed_inventory
)
