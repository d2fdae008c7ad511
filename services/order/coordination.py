"""How the order service coordinates its sagas, chosen once when the service starts (SAGA_MODE)
and handed to what places and cancels orders, the consumer and the reaper: the only place the
two styles differ.

- Choreography: nobody directs the saga; each participant acts on the events before it (the
  saga's definition, shared/definition.py). The order service follows the outcomes, and its
  reaper cancels an order past its deadline. Nothing here touches `saga_instances`.
- Orchestration: the orchestrator (services/order/orchestrator.py) starts a saga with each
  order, sends each step's command, takes the replies and compensates a cancelled order; its
  reaper runs each saga's timer.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol
from uuid import UUID

from services.order import metrics, orchestrator, reaper
from services.order.handlers import HANDLERS
from services.order.settings import OrderSettings
from shared.db import Database
from shared.system import Mode
from shared.uow import Handler, UnitOfWork


class Coordination(Protocol):
    # What the order service's work queue takes, and who handles it.
    handlers: ClassVar[dict[str, Handler]]

    async def started(self, uow: UnitOfWork, order_id: UUID, deadline: datetime) -> None:
        """An order was placed in this unit of work."""

    async def cancelled(self, uow: UnitOfWork, order_id: UUID) -> None:
        """An in-flight order was cancelled in this unit of work."""

    async def run_timers(self, database: Database) -> int:
        """One pass of the reaper over one batch; how many it acted on."""

    async def watch(self, database: Database) -> None:
        """Publish what the reaper watches besides the orders in flight."""


@dataclass(frozen=True)
class Choreography:
    handlers: ClassVar[dict[str, Handler]] = HANDLERS

    async def started(self, uow: UnitOfWork, order_id: UUID, deadline: datetime) -> None:
        pass  # OrderCreated, emitted with the order, starts it

    async def cancelled(self, uow: UnitOfWork, order_id: UUID) -> None:
        pass  # OrderCancelled, emitted with the cancel, compensates

    async def run_timers(self, database: Database) -> int:
        return await reaper.cancel_overdue(database, self)

    async def watch(self, database: Database) -> None:
        pass


@dataclass(frozen=True)
class Orchestration:
    handlers: ClassVar[dict[str, Handler]] = orchestrator.REPLY_HANDLERS
    # An unanswered compensation goes out again after this long, doubling each time (kept on
    # the saga's row).
    resend_seconds: float

    async def started(self, uow: UnitOfWork, order_id: UUID, deadline: datetime) -> None:
        await orchestrator.start(uow, order_id, deadline, self.resend_seconds)

    async def cancelled(self, uow: UnitOfWork, order_id: UUID) -> None:
        await orchestrator.cancelled(uow, order_id)

    async def run_timers(self, database: Database) -> int:
        return await reaper.run_due_timers(database, self)

    async def watch(self, database: Database) -> None:
        metrics.NEEDING_ATTENTION.set(await reaper.count_needing_attention(database))


def coordination_of(settings: OrderSettings) -> Coordination:
    if settings.saga_mode is Mode.ORCHESTRATION:
        return Orchestration(settings.compensation_resend_seconds)
    return Choreography()
