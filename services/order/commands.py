"""The order service's write side: placing an order and cancelling one.

The routes and the reaper call these, each in its own unit of work; a route only turns HTTP
into a command and the outcome back into HTTP, as cosmicpython's routes hand a command to the
service layer. Reads stay apart, in the routes. Each tells the service's coordination
(services/order/coordination.py) what it did: orchestrated, placing starts the order's saga and
cancelling compensates it.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from services.order import metrics
from services.order.state import TERMINAL, Status, move
from shared import tracing
from shared.events import Item, Name, OrderCancelled, OrderCreated, items_json
from shared.uow import UnitOfWork

if TYPE_CHECKING:  # services/order/coordination.py imports what imports this
    from services.order.coordination import Coordination


class PlaceOrder(BaseModel):
    """The customer's order, as `POST /orders` takes it (SPEC.md, "HTTP")."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Name
    items: list[Item] = Field(min_length=1, max_length=50)


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key came before with another body."""


class NotCancellable(Exception):
    """The order is past its pivot (CONFIRMED) or was REJECTED: nothing to cancel."""

    def __init__(self, status: Status) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Placed:
    order: Any  # the order's row
    created: bool  # False: the Idempotency-Key found the order placed before


# A repeated Idempotency-Key conflicts and inserts nothing (NULL keys never conflict). The
# order's first history row is written by the same statement, for the order it created.
INSERT_ORDER = """
    WITH created AS (
        INSERT INTO orders (order_id, customer_id, items, total_cents, status, deadline_at,
                            idempotency_key, request_fingerprint, trace_context)
        VALUES (%(order_id)s, %(customer_id)s, %(items)s::jsonb, %(total_cents)s, %(status)s,
                %(deadline_at)s, %(idempotency_key)s, %(request_fingerprint)s,
                %(trace_context)s::jsonb)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING order_id, customer_id, items, total_cents, status, reason,
                  created_at, updated_at, deadline_at
    ), recorded AS (
        INSERT INTO order_history (order_id, from_status, to_status)
        SELECT order_id, NULL, status FROM created
    )
    SELECT * FROM created
"""
TRACE_OF_ORDER = "SELECT trace_context FROM orders WHERE order_id = %(order_id)s"
ORDER_OF_KEY = """
    SELECT order_id, customer_id, items, total_cents, status, reason,
           created_at, updated_at, deadline_at, request_fingerprint
    FROM orders WHERE idempotency_key = %(idempotency_key)s
"""


async def place_order(
    uow: UnitOfWork,
    command: PlaceOrder,
    deadline_seconds: float,
    idempotency_key: str | None,
    coordination: "Coordination",
) -> Placed:
    """A new PENDING order and its OrderCreated (and, orchestrated, its saga); or, for a key
    seen before with the same body, the order it placed then."""
    order_id = uuid4()
    total = sum(item.quantity * item.unit_price_cents for item in command.items)
    deadline = datetime.now(UTC) + timedelta(seconds=deadline_seconds)
    fingerprint = _fingerprint(command) if idempotency_key else None
    row = await uow.sql.first(
        INSERT_ORDER,
        order_id=order_id,
        customer_id=command.customer_id,
        items=items_json(command.items),
        total_cents=total,
        status=Status.PENDING,
        deadline_at=deadline,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        # The saga's trace: its later cancel, whoever asks, continues it.
        trace_context=json.dumps(tracing.current()),
    )
    if row is None:  # the key was used before: same body, same order; else refuse
        existing = await uow.sql.first(ORDER_OF_KEY, idempotency_key=idempotency_key)
        if existing.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused
        return Placed(existing, created=False)
    uow.emit(
        OrderCreated(
            order_id=order_id,
            customer_id=command.customer_id,
            items=command.items,
            total_cents=total,
            deadline_at=deadline,
        )
    )
    await coordination.started(uow, order_id, deadline)
    return Placed(row, created=True)


async def cancel_order(
    uow: UnitOfWork,
    order_id: UUID,
    reason: Literal["timeout", "customer"],
    coordination: "Coordination",
) -> tuple[Status, list[Status]]:
    """Move an in-flight order to CANCELLED and announce it, so payment refunds and inventory
    releases (orchestrated: its saga sends the refund and the release). Returns where the order
    was and the steps it took: none if it was CANCELLED already. Raises UnknownOrder, or
    NotCancellable past the pivot."""
    current, steps, age_seconds = await move(uow.sql, order_id, Status.CANCELLED, reason=reason)
    if steps:
        stored = await uow.sql.scalar(TRACE_OF_ORDER, order_id=order_id)
        with tracing.continuing(stored, f"cancel order ({reason})"):
            uow.emit(OrderCancelled(order_id=order_id, reason=reason))
            await coordination.cancelled(uow, order_id)
        metrics.finished(uow, Status.CANCELLED, reason, age_seconds)
    elif current in TERMINAL and current is not Status.CANCELLED:
        raise NotCancellable(current)
    return current, steps


def _fingerprint(command: PlaceOrder) -> str:
    canonical = json.dumps(command.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
