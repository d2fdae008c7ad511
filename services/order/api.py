"""The order service's HTTP API (SPEC.md, "HTTP"). Routes stay thin: a write builds a command
for services/order/commands.py and turns its outcome into HTTP; a read reads."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel

from services.order import commands
from services.order.commands import IdempotencyKeyReused, NotCancellable, PlaceOrder
from services.order.coordination import Coordination
from services.order.settings import OrderSettings
from services.order.state import IN_FLIGHT, Status, UnknownOrder
from services.order.tables import order_history, orders
from shared.events import BIGINT, Item
from shared.http import BODY, Invalid, Problem, answers
from shared.service import DatabaseDep, TransactDep
from shared.uow import UnitOfWork

router = APIRouter(tags=["orders"])


async def _settings(request: Request) -> OrderSettings:
    settings: OrderSettings = request.app.state.runtime.settings
    return settings


SettingsDep = Annotated[OrderSettings, Depends(_settings)]


async def _coordination(request: Request) -> Coordination:
    coordination: Coordination = request.app.state.coordination
    return coordination


CoordinationDep = Annotated[Coordination, Depends(_coordination)]


IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[!-~]+$"),
]


class OrderOut(BaseModel):
    order_id: UUID
    customer_id: str
    items: list[Item]
    total_cents: int
    status: Status
    reason: str | None
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime


class OrderList(BaseModel):
    orders: list[OrderOut]


class Transition(BaseModel):
    from_status: Status | None
    to_status: Status
    reason: str | None
    message_id: UUID | None
    at: datetime


class History(BaseModel):
    order_id: UUID
    transitions: list[Transition]


ORDER_COLUMNS = (
    orders.c.order_id,
    orders.c.customer_id,
    orders.c["items"],
    orders.c.total_cents,
    orders.c.status,
    orders.c.reason,
    orders.c.created_at,
    orders.c.updated_at,
    orders.c.deadline_at,
)
ORDER_BY_ID = """
    SELECT order_id, customer_id, items, total_cents, status, reason,
           created_at, updated_at, deadline_at
    FROM orders WHERE order_id = %(order_id)s
"""


# The same Idempotency-Key with another body is a 422 of its own (SPEC.md), beside validation's.
PLACE_ANSWERS = answers(*BODY, 503, s422=Invalid | Problem)
PLACE_ANSWERS[200] = {"model": OrderOut, "description": "placed before with this Idempotency-Key"}
CANCEL_ANSWERS = answers(404, 409, 422, 503)
CANCEL_ANSWERS[200] = {"description": "already CANCELLED"}
CANCEL_ANSWERS[202] = {"model": OrderOut, "description": "cancelled now; OrderCancelled follows"}


@router.post("/orders", status_code=201, response_model=OrderOut, responses=PLACE_ANSWERS)
async def create_order(
    body: PlaceOrder,
    response: Response,
    transact: TransactDep,
    settings: SettingsDep,
    coordination: CoordinationDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    async def place(uow: UnitOfWork) -> commands.Placed | None:
        try:
            return await commands.place_order(
                uow, body, settings.order_deadline_seconds, idempotency_key, coordination
            )
        except IdempotencyKeyReused:  # nothing written
            return None

    placed = await transact(place)
    if placed is None:
        raise HTTPException(422, "Idempotency-Key was already used with another body")
    if not placed.created:
        response.status_code = 200
    response.headers["Location"] = f"/orders/{placed.order.order_id}"
    return placed.order._asdict()


@router.get("/orders/{order_id}", response_model=OrderOut, responses=answers(404, 422, 503))
async def get_order(order_id: UUID, database: DatabaseDep) -> Any:
    async with database.connect(autocommit=True) as sql:
        row = await sql.first(ORDER_BY_ID, order_id=order_id)
    if row is None:
        raise HTTPException(404, f"order {order_id} not found")
    return row._asdict()


@router.get("/orders", response_model=OrderList, responses=answers(422, 503))
async def list_orders(
    database: DatabaseDep,
    status: Status | None = None,
    overdue: Annotated[
        bool, Query(description="only in-flight orders past their deadline")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
) -> Any:
    query = sa.select(*ORDER_COLUMNS).order_by(orders.c.created_at.desc(), orders.c.order_id)
    if status is not None:
        query = query.where(orders.c.status == status)
    if overdue:
        query = query.where(orders.c.status.in_(IN_FLIGHT), orders.c.deadline_at < sa.func.now())
    async with database.reading() as conn:
        rows = (await conn.execute(query.limit(limit).offset(offset))).all()
    return {"orders": [row._asdict() for row in rows]}


@router.get("/orders/{order_id}/history", response_model=History, responses=answers(404, 422, 503))
async def order_history_of(order_id: UUID, database: DatabaseDep) -> Any:
    async with database.reading() as conn:
        rows = (
            await conn.execute(
                sa.select(order_history)
                .where(order_history.c.order_id == order_id)
                .order_by(order_history.c.id)
            )
        ).all()
    if not rows:
        raise HTTPException(404, f"order {order_id} not found")
    return {"order_id": order_id, "transitions": [row._asdict() for row in rows]}


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderOut,
    responses=CANCEL_ANSWERS,
)
async def cancel_order(
    order_id: UUID, response: Response, transact: TransactDep, coordination: CoordinationDep
) -> Any:
    async def cancel(uow: UnitOfWork) -> tuple[list[Status], Any] | HTTPException:
        try:
            _, steps = await commands.cancel_order(uow, order_id, "customer", coordination)
        except UnknownOrder:  # nothing written
            return HTTPException(404, f"order {order_id} not found")
        except NotCancellable as refused:  # nothing written
            return HTTPException(
                409, f"order {order_id} is {refused.status} and can no longer be cancelled"
            )
        return steps, await uow.sql.first(ORDER_BY_ID, order_id=order_id)

    outcome = await transact(cancel)
    if isinstance(outcome, HTTPException):
        raise outcome
    steps, row = outcome
    response.status_code = 202 if steps else 200
    return row._asdict()
