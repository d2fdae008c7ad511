"""The inventory service's reactions: reserve an order's lines once it is paid (all or none),
release them if the saga is cancelled; and, in orchestration mode, the same steps as commands
(COMMAND_HANDLERS), by the same SQL.

Every handler runs under the saga's advisory lock (shared/inbox.py); stock rows are locked in
sku order, so two reservations sharing skus can wait on each other but never deadlock. The SQL
is written out (shared/db.py): it is the heart of each step.
"""

from collections import Counter
from typing import Any
from uuid import UUID, uuid4

from shared import cancellations
from shared.commands import ReleaseInventory, ReserveInventory
from shared.events import (
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    Item,
    OrderCancelled,
    PaymentSucceeded,
    items_json,
)
from shared.metrics import COMPENSATIONS
from shared.uow import UnitOfWork, handlers

# Lock the order's products in sku order and read what is available.
LOCK_STOCK = """
    SELECT sku, available FROM products WHERE sku = ANY(%(skus)s::text[]) ORDER BY sku FOR UPDATE
"""
# In one round trip, under the saga's lock: what inventory already holds for the order, and its
# products locked as LOCK_STOCK locks them, with what is available of each ({sku: units}).
KNOWN_AND_STOCK = f"""
    WITH stock AS ({LOCK_STOCK})
    SELECT EXISTS (SELECT FROM cancelled_orders WHERE order_id = %(order_id)s) AS cancelled,
           EXISTS (SELECT FROM reservations WHERE order_id = %(order_id)s) AS reserved,
           (SELECT coalesce(jsonb_object_agg(sku, available), '{{}}') FROM stock) AS available
"""
# The stock is taken and the reservation recorded by one statement. The update is conditional
# as well as locked (the CHECK (available >= 0) backs both): the reservation is written only
# if every line was taken.
RESERVE = """
    WITH taken AS (
        UPDATE products p
        SET available = p.available - w.quantity, reserved = p.reserved + w.quantity,
            updated_at = now()
        FROM unnest(%(skus)s::text[], %(quantities)s::bigint[]) AS w (sku, quantity)
        WHERE p.sku = w.sku AND p.available >= w.quantity
        RETURNING p.sku
    )
    INSERT INTO reservations (reservation_id, order_id, items)
    SELECT %(reservation_id)s, %(order_id)s, %(items)s::jsonb
    WHERE (SELECT count(*) FROM taken) = cardinality(%(skus)s::text[])
"""
RETURN_STOCK = """
    UPDATE products p
    SET available = p.available + w.quantity, reserved = p.reserved - w.quantity,
        updated_at = now()
    FROM unnest(%(skus)s::text[], %(quantities)s::bigint[]) AS w (sku, quantity)
    WHERE p.sku = w.sku
"""
RESERVATION_OF_ORDER = """
    SELECT r.reservation_id, r.items, l.release_id, l.reason AS release_reason
    FROM reservations r LEFT JOIN releases l USING (reservation_id)
    WHERE r.order_id = %(order_id)s
"""
RECORD_RELEASE = """
    INSERT INTO releases (release_id, reservation_id, order_id, reason)
    VALUES (%(release_id)s, %(reservation_id)s, %(order_id)s, %(reason)s)
"""


def units_per_sku(items: list[Item]) -> dict[str, int]:
    """Quantities summed per sku (an order may list a sku twice), in lock order."""
    wanted: Counter[str] = Counter()
    for item in items:
        wanted[item.sku] += item.quantity
    return dict(sorted(wanted.items()))


def _as_arrays(wanted: dict[str, int]) -> dict[str, list[Any]]:
    return {"skus": list(wanted), "quantities": list(wanted.values())}


def _describe(wanted: dict[str, int]) -> str:
    return ", ".join(f"{quantity} x {sku}" for sku, quantity in wanted.items())


async def reserve_stock(uow: UnitOfWork, event: PaymentSucceeded) -> str:
    return await _reserve(uow, event.order_id, event.items)


async def reserve_on_command(uow: UnitOfWork, command: ReserveInventory) -> str:
    return await _reserve(uow, command.order_id, command.items)


async def _reserve(uow: UnitOfWork, order_id: UUID, items: list[Item]) -> str:
    sql = uow.sql
    wanted = units_per_sku(items)
    known = await sql.first(KNOWN_AND_STOCK, order_id=order_id, skus=list(wanted))
    if known.cancelled:
        uow.emit(InventoryFailed(order_id=order_id, reason="order_cancelled"))
        return "not reserved, the order was cancelled first"
    if known.reserved:
        return "already reserved"
    available: dict[str, int] = known.available
    for sku, quantity in wanted.items():  # all lines or none
        if sku not in available:
            uow.emit(InventoryFailed(order_id=order_id, reason="unknown_sku", sku=sku))
            return f"cannot reserve: unknown sku {sku}"
        if available[sku] < quantity:
            uow.emit(InventoryFailed(order_id=order_id, reason="out_of_stock", sku=sku))
            return f"cannot reserve: {sku} short, {available[sku]} available, {quantity} wanted"
    reservation_id = uuid4()
    reserved = await sql.execute(
        RESERVE,
        reservation_id=reservation_id,
        order_id=order_id,
        items=items_json(items),
        **_as_arrays(wanted),
    )
    if reserved != 1:  # impossible under the row locks; refuse rather than guess
        raise RuntimeError(f"stock for order {order_id} changed under its locks")
    uow.emit(InventoryReserved(order_id=order_id, reservation_id=reservation_id, items=items))
    return f"reserved {_describe(wanted)}"


async def release_for_cancelled_order(uow: UnitOfWork, event: OrderCancelled) -> str:
    # Remembered for good: a PaymentSucceeded that arrives after this never reserves.
    await cancellations.remember(uow.sql, event.order_id, event.reason)
    return await _release(uow, event.order_id, "order_cancelled")


async def release_on_command(uow: UnitOfWork, command: ReleaseInventory) -> str:
    # Remembered for good, as a cancellation is: a ReserveInventory that arrives after this is
    # refused, so the release's answer stays true.
    await cancellations.remember(uow.sql, command.order_id, command.reason)
    return await _release(uow, command.order_id, command.reason, answer=True)


async def _release(uow: UnitOfWork, order_id: UUID, reason: str, answer: bool = False) -> str:
    """Give the stock back once: a new release record, the reservation itself untouched.

    `answer`: the orchestrator asked, and sends the command again until it hears back, so every
    outcome replies: InventoryReleased (now or before) or, never reserved, InventoryFailed."""
    sql = uow.sql
    reservation = await sql.first(RESERVATION_OF_ORDER, order_id=order_id)
    if reservation is None:
        if answer:
            uow.emit(InventoryFailed(order_id=order_id, reason="order_cancelled"))
        return "nothing to release, never reserved"
    if reservation.release_id is not None:
        if answer:
            uow.emit(
                InventoryReleased(
                    order_id=order_id,
                    reservation_id=reservation.reservation_id,
                    reason=reservation.release_reason,
                )
            )
        return "already released"
    wanted = units_per_sku([Item.model_validate(item) for item in reservation.items])
    await sql.all(LOCK_STOCK, skus=list(wanted))
    await sql.execute(RETURN_STOCK, **_as_arrays(wanted))
    await sql.execute(
        RECORD_RELEASE,
        release_id=uuid4(),
        reservation_id=reservation.reservation_id,
        order_id=order_id,
        reason=reason,
    )
    uow.emit(
        InventoryReleased(
            order_id=order_id, reservation_id=reservation.reservation_id, reason=reason
        )
    )
    uow.after_commit(COMPENSATIONS.labels("release").inc)
    return f"released {_describe(wanted)}"


HANDLERS = handlers(reserve_stock, release_for_cancelled_order)
COMMAND_HANDLERS = handlers(reserve_on_command, release_on_command)
