"""The reaper: cancels in-flight orders past their deadline, so no saga stays stuck; in
orchestration mode, the timer of every saga instance (its persisted `expires_at`): a running
saga past it is cancelled, a compensating one sends its compensations again.

Safe with several order-service processes: each claims its batch with FOR UPDATE SKIP LOCKED,
and the state machine's conditional update refuses an order that moved on meanwhile. A cancel
is the same command a customer's cancel runs (services/order/commands.py).
"""

import asyncio
import logging
from typing import TYPE_CHECKING

from services.order import metrics, orchestrator
from services.order.commands import cancel_order
from services.order.saga import ACTIVE, SagaStatus
from services.order.state import IN_FLIGHT, describe
from shared.db import Database
from shared.log import for_order
from shared.uow import UnitOfWork

if TYPE_CHECKING:  # services/order/coordination.py imports this
    from services.order.coordination import Coordination

logger = logging.getLogger("reaper")

BATCH = 100
CLAIM_OVERDUE = """
    SELECT order_id FROM orders
    WHERE status = ANY(%(in_flight)s::text[]) AND deadline_at < now()
    ORDER BY deadline_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
"""
# The orchestrator's timers. The order's row is what is locked, as everywhere before its saga's
# (services/order/orchestrator.py).
CLAIM_DUE = """
    SELECT s.saga_id FROM saga_instances s JOIN orders o ON o.order_id = s.saga_id
    WHERE s.status = ANY(%(active)s::text[]) AND s.expires_at < now()
    ORDER BY s.expires_at
    LIMIT %(batch)s
    FOR UPDATE OF o SKIP LOCKED
"""
COUNT_NEEDING_ATTENTION = "SELECT count(*) FROM saga_instances WHERE status = 'NEEDS_ATTENTION'"
COUNT_IN_FLIGHT = """
    SELECT count(*) AS in_flight, count(*) FILTER (WHERE deadline_at < now()) AS overdue
    FROM orders WHERE status = ANY(%(in_flight)s::text[])
"""


async def cancel_overdue(database: Database, coordination: "Coordination") -> int:
    """Cancel one batch of overdue orders; return how many were cancelled."""
    async with UnitOfWork(database, "order") as uow:
        overdue = await uow.sql.all(CLAIM_OVERDUE, in_flight=sorted(IN_FLIGHT), batch=BATCH)
        for (order_id,) in overdue:
            current, steps = await cancel_order(uow, order_id, "timeout", coordination)
            for_order(logger, order_id).info(
                "deadline passed: %s -> OrderCancelled", describe(current, steps)
            )
        await uow.commit()
    return len(overdue)


async def run_due_timers(database: Database, coordination: "Coordination") -> int:
    """Orchestrated: act on one batch of sagas past their expiry; return how many."""
    async with UnitOfWork(database, "order") as uow:
        due = await uow.sql.all(CLAIM_DUE, active=sorted(ACTIVE), batch=BATCH)
        for (order_id,) in due:
            log = for_order(logger, order_id)
            saga = await orchestrator.lock(uow, order_id)
            if saga is not None and saga.status is SagaStatus.RUNNING:
                current, steps = await cancel_order(uow, order_id, "timeout", coordination)
                log.info("deadline passed: %s -> OrderCancelled", describe(current, steps))
            else:
                log.info("compensation unanswered: %s", await orchestrator.resend(uow, order_id))
        await uow.commit()
    return len(due)


async def count_needing_attention(database: Database) -> int:
    """Orchestrated: the sagas given to a person."""
    async with database.connect(autocommit=True) as sql:
        return int(await sql.scalar(COUNT_NEEDING_ATTENTION))


async def count_in_flight(database: Database) -> tuple[int, int]:
    """In-flight orders, and how many of them are past their deadline."""
    async with database.connect(autocommit=True) as sql:
        row = await sql.first(COUNT_IN_FLIGHT, in_flight=sorted(IN_FLIGHT))
    return row.in_flight, row.overdue


async def run_reaper(
    database: Database,
    coordination: "Coordination",
    interval_seconds: float,
    enabled: bool = True,
) -> None:
    """Every interval: publish how many orders are in flight and overdue, then (if enabled)
    cancel the overdue ones, or, orchestrated, run the sagas' due timers."""
    while True:
        try:
            in_flight, overdue = await count_in_flight(database)
            metrics.IN_FLIGHT.set(in_flight)
            metrics.OVERDUE.set(overdue)
            await coordination.watch(database)
            while enabled and await coordination.run_timers(database) == BATCH:
                pass
        except Exception:
            logger.exception("reaper pass failed; trying again in %.1f s", interval_seconds)
        await asyncio.sleep(interval_seconds)
