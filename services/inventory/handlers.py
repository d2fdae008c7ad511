"""The inventory service's reactions: reserve an order's lines once it is paid (all or none),
release them if the saga is cancelled.

Every handler runs under the saga's advisory lock (shared/uow.py); stock rows are locked in
sku order, so two reservations sharing skus can wait on each other but never deadlock.
"""

from collections import Counter
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from services.inventory.tables import cancelled_orders, products, releases, reservations
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


def units_per_sku(items: list[Item]) -> dict[str, int]:
    """Quantities summed per sku (an order may list a sku twice), in lock order."""
    wanted: Counter[str] = Counter()
    for item in items:
        wanted[item.sku] += item.quantity
    return dict(sorted(wanted.items()))


async def reserve_stock(uow: UnitOfWork, event: PaymentSucceeded) -> str:
    conn, order_id = uow.conn, event.order_id
    if await conn.scalar(
        sa.select(sa.literal(True)).where(cancelled_orders.c.order_id == order_id)
    ):
        uow.emit(InventoryFailed(order_id=order_id, reason="order_cancelled"))
        return "not reserved, the order was cancelled first"
    if await conn.scalar(
        sa.select(reservations.c.reservation_id).where(reservations.c.order_id == order_id)
    ):
        return "already reserved"
    wanted = units_per_sku(event.items)
    locked = await conn.execute(
        sa.select(products.c.sku, products.c.available)
        .where(products.c.sku.in_(wanted))
        .order_by(products.c.sku)
        .with_for_update()
    )
    available = {sku: units for sku, units in locked}
    for sku, quantity in wanted.items():
        if sku not in available:
            uow.emit(InventoryFailed(order_id=order_id, reason="unknown_sku", sku=sku))
            return f"cannot reserve: unknown sku {sku}"
        if available[sku] < quantity:
            uow.emit(InventoryFailed(order_id=order_id, reason="out_of_stock", sku=sku))
            return f"cannot reserve: {sku} short, {available[sku]} available, {quantity} wanted"
    for sku, quantity in wanted.items():
        # Conditional as well as locked; the CHECK (available >= 0) backs both.
        await conn.execute(
            products.update()
            .where(products.c.sku == sku, products.c.available >= quantity)
            .values(
                available=products.c.available - quantity,
                reserved=products.c.reserved + quantity,
                updated_at=sa.func.now(),
            )
        )
    reservation_id = uuid4()
    await conn.execute(
        reservations.insert().values(
            reservation_id=reservation_id,
            order_id=order_id,
            items=[item.model_dump() for item in event.items],
        )
    )
    uow.emit(InventoryReserved(order_id=order_id, reservation_id=reservation_id, items=event.items))
    return "reserved " + ", ".join(f"{quantity} x {sku}" for sku, quantity in wanted.items())


async def release_for_cancelled_order(uow: UnitOfWork, event: OrderCancelled) -> str:
    # Remembered for good: a PaymentSucceeded that arrives after this never reserves.
    await uow.conn.execute(
        insert(cancelled_orders)
        .values(order_id=event.order_id, reason=event.reason)
        .on_conflict_do_nothing()
    )
    return await _release(uow, event.order_id, "order_cancelled")


async def _release(uow: UnitOfWork, order_id: UUID, reason: str) -> str:
    """Give the stock back once: a new release record, the reservation itself untouched."""
    conn = uow.conn
    reservation = (
        await conn.execute(
            sa.select(reservations.c.reservation_id, reservations.c["items"], releases.c.release_id)
            .outerjoin(releases, releases.c.reservation_id == reservations.c.reservation_id)
            .where(reservations.c.order_id == order_id)
        )
    ).one_or_none()
    if reservation is None:
        return "nothing to release, never reserved"
    if reservation.release_id is not None:
        return "already released"
    wanted = units_per_sku([Item.model_validate(item) for item in reservation.items])
    await conn.execute(
        sa.select(products.c.sku)
        .where(products.c.sku.in_(wanted))
        .order_by(products.c.sku)
        .with_for_update()
    )
    for sku, quantity in wanted.items():
        await conn.execute(
            products.update()
            .where(products.c.sku == sku)
            .values(
                available=products.c.available + quantity,
                reserved=products.c.reserved - quantity,
                updated_at=sa.func.now(),
            )
        )
    await conn.execute(
        releases.insert().values(
            release_id=uuid4(),
            reservation_id=reservation.reservation_id,
            order_id=order_id,
            reason=reason,
        )
    )
    uow.emit(
        InventoryReleased(
            order_id=order_id, reservation_id=reservation.reservation_id, reason=reason
        )
    )
    return "released " + ", ".join(f"{quantity} x {sku}" for sku, quantity in wanted.items())


HANDLERS: dict[str, Handler] = {
    "payment.succeeded": reserve_stock,
    "order.cancelled": release_for_cancelled_order,
}
