"""The reaper: cancels in-flight orders past their deadline, so no saga stays stuck.

Safe with several order-service processes: each claims its batch with FOR UPDATE SKIP LOCKED,
and the state machine's conditional update refuses an order that moved on meanwhile. A cancel
is the same command a customer's cancel runs (services/order/commands.py).
"""

import asyncio
import logging

from services.order import metrics
from services.order.commands import cancel_order
from services.order.state import IN_FLIGHT, describe
from shared.db import Database
from shared.log import for_order
from shared.uow import UnitOfWork

logger = logging.getLogger("reaper")

BATCH = 100
CLAIM_OVERDUE = """
    SELECT order_id FROM orders
    WHERE status = ANY(%(in_flight)s::text[]) AND deadline_at < now()
    ORDER BY deadline_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
"""
COUNT_IN_FLIGHT = """
    SELECT count(*) AS in_flight, count(*) FILTER (WHERE deadline_at < now()) AS overdue
    FROM orders WHERE status = ANY(%(in_flight)s::text[])
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


async def count_in_flight(database: Database) -> tuple[int, int]:
    """In-flight orders, and how many of them are past their deadline."""
    async with database.connect(autocommit=True) as sql:
        row = await sql.first(COUNT_IN_FLIGHT, in_flight=sorted(IN_FLIGHT))
    return row.in_flight, row.overdue


async def run_reaper(database: Database, interval_seconds: float, enabled: bool = True) -> None:
    """Every interval: publish how many orders are in flight and overdue, then (if enabled)
    cancel the overdue ones."""
    while True:
        try:
            in_flight, overdue = await count_in_flight(database)
            metrics.IN_FLIGHT.set(in_flight)
            metrics.OVERDUE.set(overdue)
            while enabled and await cancel_overdue(database) == BATCH:
                pass
        except Exception:
            logger.exception("reaper pass failed; trying again in %.1f s", interval_seconds)
        await asyncio.sleep(interval_seconds)
