"""The orchestrator (SPEC.md, "Orchestration mode"): the step table of services/order/saga.py,
persisted in `saga_instances`.

Every transition is a conditional UPDATE of the saga's row, locked FOR UPDATE, written with its
history row and committed with the outbox rows of the commands it sends and the order's own
move (by the steps of services/order/handlers.py): nothing lives only in memory, so an
orchestrator killed between two steps goes on from the persisted one. Locks are taken in one
order everywhere, the order's row and then its saga's, so a reply, a cancel and the reaper can
wait on each other but never deadlock.
"""

import logging
from typing import Any
from uuid import UUID

from services.order import handlers
from services.order.saga import (
    CANCELLED,
    COMMANDS,
    FIRST,
    RESEND,
    START,
    Decision,
    Happened,
    Saga,
    SagaStatus,
    Send,
    Step,
    decide,
)
from services.order.state import Status, UnknownOrder, current_status
from shared.commands import Command
from shared.events import Event
from shared.log import for_order
from shared.system import ORDER
from shared.uow import Handler, UnitOfWork

logger = logging.getLogger("orchestrator")


INSERT_SAGA = """
    WITH started AS (
        INSERT INTO saga_instances (saga_id, status, step, expires_at, resend_seconds)
        VALUES (%(saga_id)s, %(status)s, %(step)s, %(expires_at)s, %(resend_seconds)s)
        RETURNING saga_id, status, step, awaiting
    )
    INSERT INTO saga_history (saga_id, to_status, to_step, awaiting, sent)
    SELECT saga_id, status, step, awaiting, %(sent)s FROM started
"""
LOCK_SAGA = """
    SELECT status, step, awaiting, sends, reason FROM saga_instances
    WHERE saga_id = %(saga_id)s FOR UPDATE
"""
# Conditional, as the order's moves are: it changes nothing unless the saga is still where this
# transaction read it. A compensating saga's timer restarts with each send, doubling (at most an
# hour); an active saga otherwise keeps its expiry (the order's deadline).
ADVANCE = """
    WITH moved AS (
        UPDATE saga_instances SET
            status = %(status)s, step = %(step)s, awaiting = %(awaiting)s, sends = %(sends)s,
            reason = %(reason)s, updated_at = now(),
            expires_at = CASE WHEN %(timer)s THEN now() + make_interval(
                secs => least(resend_seconds * 2 ^ greatest(%(sends)s - 1, 0), 3600))
                ELSE expires_at END
        WHERE saga_id = %(saga_id)s
          AND (status, step, sends) = (%(from_status)s, %(from_step)s, %(from_sends)s)
        RETURNING saga_id
    )
    INSERT INTO saga_history (saga_id, from_status, from_step, to_status, to_step, awaiting,
                              sent, message_id)
    SELECT saga_id, %(from_status)s, %(from_step)s, %(status)s, %(step)s, %(awaiting)s,
           %(sent)s, %(message_id)s
    FROM moved
"""
ORDER_LINES = "SELECT customer_id, items, total_cents FROM orders WHERE order_id = %(order_id)s"


async def start(uow: UnitOfWork, order_id: UUID, expires_at: Any, resend_seconds: float) -> None:
    """A new saga for a new order: RUNNING at its first step, its command on its way. An
    unanswered compensation will go out again after `resend_seconds`, doubling each time."""
    await uow.sql.execute(
        INSERT_SAGA,
        saga_id=order_id,
        status=START.status,
        step=START.step,
        expires_at=expires_at,
        resend_seconds=resend_seconds,
        sent=[FIRST],
    )
    uow.emit(await _command(uow, order_id, FIRST, None))
    log = for_order(logger, order_id)
    first = COMMANDS[FIRST].__name__
    uow.after_commit(lambda: log.info("placed: saga RUNNING at %s -> %s", START.step, first))


async def cancelled(uow: UnitOfWork, order_id: UUID) -> str | None:
    """The order was cancelled in this unit of work: compensate what may have been done. None
    for an order without a saga (placed in choreography)."""
    return await _advance(uow, order_id, CANCELLED)


async def resend(uow: UnitOfWork, order_id: UUID) -> str | None:
    """A compensation's reply is overdue: send it again, or give the saga to a person."""
    return await _advance(uow, order_id, RESEND)


async def on_reply(uow: UnitOfWork, reply: Event) -> str:
    """A participant answered: the next step. The order's row is locked first, as everywhere."""
    try:
        await current_status(uow.sql, reply.order_id)
    except UnknownOrder:
        return "ignored, unknown order"
    reason = getattr(reply, "reason", None)
    what = await _advance(uow, reply.order_id, type(reply), reason)
    return what or "ignored, the order has no saga"


async def lock(uow: UnitOfWork, order_id: UUID) -> Saga | None:
    row = await uow.sql.first(LOCK_SAGA, saga_id=order_id)
    if row is None:
        return None
    awaiting = frozenset(Send(name) for name in row.awaiting)
    return Saga(SagaStatus(row.status), Step(row.step), awaiting, row.sends, row.reason)


async def _advance(
    uow: UnitOfWork, order_id: UUID, happened: Happened, reason: str | None = None
) -> str | None:
    saga = await lock(uow, order_id)
    if saga is None:
        return None
    decision = decide(saga, happened, reason)
    said = [await _move_order(uow, order_id, decision)] if decision.order else []
    if decision.changed:
        await _record(uow, order_id, saga, decision)
    for send in decision.send:
        uow.emit(await _command(uow, order_id, send, decision.saga.reason))
    said.append(_describe(decision))
    return ", ".join(said)


async def _move_order(uow: UnitOfWork, order_id: UUID, decision: Decision) -> str:
    if decision.order is Status.PAID:
        return await handlers.pay(uow, order_id)
    if decision.order is Status.CONFIRMED:
        return await handlers.confirm(uow, order_id)
    assert decision.order is Status.REJECTED and decision.reason is not None
    return await handlers.reject(uow, order_id, decision.reason)


async def _record(uow: UnitOfWork, order_id: UUID, before: Saga, decision: Decision) -> None:
    after = decision.saga
    moved = await uow.sql.execute(
        ADVANCE,
        saga_id=order_id,
        status=after.status,
        step=after.step,
        awaiting=sorted(after.awaiting),
        sends=after.sends,
        reason=after.reason,
        timer=after.status is SagaStatus.COMPENSATING and bool(decision.send),
        from_status=before.status,
        from_step=before.step,
        from_sends=before.sends,
        sent=list(decision.send),
        message_id=uow.cause.message_id if uow.cause else None,
    )
    if moved != 1:  # impossible under the row lock; refuse rather than guess
        raise RuntimeError(f"saga {order_id} left {before.status} at {before.step} under a lock")


async def _command(uow: UnitOfWork, order_id: UUID, send: Send, reason: str | None) -> Command:
    """The command, with what it carries taken from the order (its customer, amount, lines)
    and the saga's reason; a compensation needs only the reason, and reads nothing."""
    command = COMMANDS[send]
    fields: dict[str, Any] = {"order_id": order_id, "reason": reason or "order_cancelled"}
    if set(command.model_fields) - set(fields):
        order = await uow.sql.first(ORDER_LINES, order_id=order_id)
        fields |= {
            "customer_id": order.customer_id,
            "amount_cents": order.total_cents,
            "items": order.items,
        }
    return command.model_validate(fields)


def _describe(decision: Decision) -> str:
    after = decision.saga
    if not decision.changed:
        return decision.note
    where = f"saga {after.status}"
    if after.status is SagaStatus.RUNNING:
        where += f" at {after.step}"
    if after.awaiting:
        where += f" (awaiting {', '.join(sorted(after.awaiting))})"
    note = f", {decision.note}" if decision.note else ""
    return f"{where}{note}"


# The orchestrator's handler table: every reply goes through the step table.
REPLY_HANDLERS: dict[str, Handler] = dict.fromkeys(ORDER.replies, on_reply)
