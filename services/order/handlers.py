"""The order service's reactions to the saga's events. Each moves the order through the state
machine (services/order/state.py) and announces a terminal outcome. The orchestrator
(services/order/orchestrator.py) moves the order by the same three steps: `pay`, `confirm` and
`reject`."""

from uuid import UUID

from services.order import metrics
from services.order.state import Status, UnknownOrder, describe, move
from shared.events import (
    InventoryFailed,
    InventoryReserved,
    OrderConfirmed,
    OrderRejected,
    PaymentFailed,
    PaymentSucceeded,
)
from shared.uow import Handler, UnitOfWork


async def _move(
    uow: UnitOfWork, order_id: UUID, target: Status, reason: str | None = None
) -> tuple[str, bool]:
    cause = uow.cause.message_id if uow.cause else None
    try:
        current, steps = await move(uow.sql, order_id, target, reason=reason, message_id=cause)
    except UnknownOrder:
        return "ignored, unknown order", False
    return describe(current, steps), bool(steps) and steps[-1] is target


async def pay(uow: UnitOfWork, order_id: UUID) -> str:
    what, _ = await _move(uow, order_id, Status.PAID)
    return what


async def confirm(uow: UnitOfWork, order_id: UUID) -> str:
    what, moved = await _move(uow, order_id, Status.CONFIRMED)
    if moved:
        uow.emit(OrderConfirmed(order_id=order_id))
        await metrics.finished(uow, order_id, Status.CONFIRMED, None)
    return what


async def reject(uow: UnitOfWork, order_id: UUID, reason: str) -> str:
    what, moved = await _move(uow, order_id, Status.REJECTED, reason)
    if moved:
        uow.emit(OrderRejected(order_id=order_id, reason=reason))
        await metrics.finished(uow, order_id, Status.REJECTED, reason)
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


HANDLERS: dict[str, Handler] = {
    "payment.succeeded": mark_paid,
    "payment.failed": reject_for_declined_payment,
    "inventory.reserved": confirm_order,
    "inventory.failed": reject_for_failed_inventory,
}
