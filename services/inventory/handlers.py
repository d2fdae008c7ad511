"""The inventory service's reactions: reserve an order's lines once it is paid (all or none),
release them if the saga is cancelled.

Every handler runs under the saga's advisory lock (shared/inbox.py); stock rows are locked in
sku order, so two reservations sharing skus can wait on each other but never deadlock. The SQL
is written out: it is the heart of each step, and a constant statement costs SQLAlchemy
nothing to re-key.
"""

from collections import Counter
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared import cancellations
from shared.consumer import Handler
from shared.events import (
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    Item,
    OrderCancelled,
    PaymentSucceeded,
)
from shared.uow import UnitOfWork

# Lock the order's products in sku order and read what is available.
LOCK_STOCK = sa.text(
    "SELECT sku, available FROM products WHERE sku = ANY(:skus) ORDER BY sku FOR UPDATE"
)
# Conditional as well as locked; the CHECK (available >= 0) backs both.
TAKE_STOCK = sa.text(
    """
    UPDATE products p
    SET available = p.available - w.quantity, reserved = p.reserved + w.quantity,
        updated_at = now()
    FROM unnest(CAST(:skus AS text[]), CAST(:quantities AS bigint[])) AS w (sku, quantity)
    WHERE p.sku = w.sku AND p.available >= w.quantity
    """
)
RETURN_STOCK = sa.text(
    """
    UPDATE products p
    SET available = p.available + w.quantity, reserved = p.reserved - w.quantity,
        updated_at = now()
    FROM unnest(CAST(:skus AS text[]), CAST(:quantities AS bigint[])) AS w (sku, quantity)
    WHERE p.sku = w.sku
    """
)
IS_RESERVED = sa.text("SELECT true FROM reservations WHERE order_id = :order_id")
RECORD_RESERVATION = sa.text(
    "INSERT INTO reservations (reservation_id, order_id, items) "
    "VALUES (:reservation_id, :order_id, :items)"
).bindparams(sa.bindparam("items", type_=JSONB))
RESERVATION_OF_ORDER = sa.text(
    """
    SELECT r.reservation_id, r.items, l.release_id
    FROM reservations r LEFT JOIN releases l USING (reservation_id)
    WHERE r.order_id = :order_id
    """
)
RECORD_RELEASE = sa.text(
    "INSERT INTO releases (release_id, reservation_id, order_id, reason) "
    "VALUES (:release_id, :reservation_id, :order_id, :reason)"
)


def units_per_sku(items: list[Item]) -> dict[str, int]:
    """Quantities summed per sku (an order may list a sku twice), in lock order."""
    wanted: Counter[str] = Counter()
    for item in items:
        wanted[item.sku] += item.quantity
    return dict(sorted(wanted.items()))


def _as_arrays(wanted: dict[str, int]) -> dict[str, list[object]]:
    return {"skus": list(wanted), "quantities": list(wanted.values())}


def _describe(wanted: dict[str, int]) -> str:
    return ", ".join(f"{quantity} x {sku}" for sku, quantity in wanted.items())


async def reserve_stock(uow: UnitOfWork, event: PaymentSucceeded) -> str:
    conn, order_id = uow.conn, event.order_id
    if await cancellations.was_cancelled(conn, order_id):
        uow.emit(InventoryFailed(order_id=order_id, reason="order_cancelled"))
        return "not reserved, the order was cancelled first"
    if await conn.scalar(IS_RESERVED, {"order_id": order_id}):
        return "already reserved"
    wanted = units_per_sku(event.items)
    locked = await conn.execute(LOCK_STOCK, {"skus": list(wanted)})
    available = {sku: units for sku, units in locked}
    for sku, quantity in wanted.items():  # all lines or none
        if sku not in available:
            uow.emit(InventoryFailed(order_id=order_id, reason="unknown_sku", sku=sku))
            return f"cannot reserve: unknown sku {sku}"
        if available[sku] < quantity:
            uow.emit(InventoryFailed(order_id=order_id, reason="out_of_stock", sku=sku))
            return f"cannot reserve: {sku} short, {available[sku]} available, {quantity} wanted"
    await conn.execute(TAKE_STOCK, _as_arrays(wanted))
    reservation_id = uuid4()
    await conn.execute(
        RECORD_RESERVATION,
        {
            "reservation_id": reservation_id,
            "order_id": order_id,
            "items": [item.model_dump() for item in event.items],
        },
    )
    uow.emit(InventoryReserved(order_id=order_id, reservation_id=reservation_id, items=event.items))
    return f"reserved {_describe(wanted)}"


async def release_for_cancelled_order(uow: UnitOfWork, event: OrderCancelled) -> str:
    # Remembered for good: a PaymentSucceeded that arrives after this never reserves.
    await cancellations.remember(uow.conn, event.order_id, event.reason)
    return await _release(uow, event.order_id, "order_cancelled")


async def _release(uow: UnitOfWork, order_id: UUID, reason: str) -> str:
    """Give the stock back once: a new release record, the reservation itself untouched."""
    conn = uow.conn
    reservation = (await conn.execute(RESERVATION_OF_ORDER, {"order_id": order_id})).first()
    if reservation is None:
        return "nothing to release, never reserved"
    if reservation.release_id is not None:
        return "already released"
    wanted = units_per_sku([Item.model_validate(item) for item in reservation.items])
    await conn.execute(LOCK_STOCK, {"skus": list(wanted)})
    await conn.execute(RETURN_STOCK, _as_arrays(wanted))
    await conn.execute(
        RECORD_RELEASE,
        {
            "release_id": uuid4(),
            "reservation_id": reservation.reservation_id,
            "order_id": order_id,
            "reason": reason,
        },
    )
    uow.emit(
        InventoryReleased(
            order_id=order_id, reservation_id=reservation.reservation_id, reason=reason
        )
    )
    return f"released {_describe(wanted)}"


HANDLERS: dict[str, Handler] = {
    "payment.succeeded": reserve_stock,
    "order.cancelled": release_for_cancelled_order,
}
