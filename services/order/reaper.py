"""The reaper: cancels in-flight orders past their deadline, so no saga stays stuck.

Safe with several order-service processes: each claims its batch with FOR UPDATE SKIP LOCKED,
and the state machine's conditional update refuses an order that moved on meanwhile. A cancel
is the same command a customer's cancel runs (services/order/commands.py).
"""

import asyncio
import logging

import sqlalchemy as sa
from prometheus_client import Gauge

from services.order.commands import cancel_order
from services.order.state import IN_FLIGHT, describe
from services.order.tables import orders
from shared.db import Database
from shared.log import for_order
from shared.uow import UnitOfWork

logger = logging.getLogger("reaper")

OVERDUE = Gauge("saga_orders_overdue", "In-flight orders past their deadline, not yet cancelled.")
BATCH = 100
CLAIM_OVERDUE = """
    SELECT order_id FROM orders
    WHERE status = ANY(%(in_flight)s::text[]) AND deadline_at < now()
    ORDER BY deadline_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
"""


async def cancel_overdue(database: Database) -> int:
    """Cancel one batch of overdue orders; return how many were cancelled."""
    async with UnitOfWork(database, "order") as uow:
        overdue = await uow.sql.all(CLAIM_OVERDUE, in_flight=sorted(IN_FLIGHT), batch=BATCH)
        for (order_id,) in overdue:
            current, steps = await cancel_order(uow, order_id, "timeout")
            for_order(logger, order_id).info(
                "deadline passed: %s -> OrderCancelled", describe(current, steps)
            )
        await uow.commit()
    return len(overdue)


async def count_overdue(database: Database) -> int:
    async with database.engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(orders)
            .where(orders.c.status.in_(IN_FLIGHT), orders.c.deadline_at < sa.func.now())
        )
    return count or 0


async def run_reaper(database: Database, interval_seconds: float, enabled: bool = True) -> None:
    """Every interval: publish how many orders are overdue, then (if enabled) cancel them."""
    while True:
        try:
            OVERDUE.set(await count_overdue(database))
            while enabled and await cancel_overdue(database) == BATCH:
                pass
        except Exception:
            logger.exception("reaper pass failed; trying again in %.1f s", interval_seconds)
        await asyncio.sleep(interval_seconds)
