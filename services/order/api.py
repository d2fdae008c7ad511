"""The order service's HTTP API (SPEC.md, "HTTP"). Routes stay thin; the domain decides."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.order.settings import OrderSettings
from services.order.state import IN_FLIGHT, TERMINAL, Status, current_status, move
from services.order.tables import order_history, orders
from shared.events import Item, OrderCancelled, OrderCreated, items_json
from shared.service import DatabaseDep, UnitOfWorkDep

router = APIRouter(tags=["orders"])


async def _settings(request: Request) -> OrderSettings:
    settings: OrderSettings = request.app.state.runtime.settings
    return settings


SettingsDep = Annotated[OrderSettings, Depends(_settings)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]


class CreateOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=64)
    items: list[Item] = Field(min_length=1, max_length=50)


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


# A repeated Idempotency-Key conflicts and inserts nothing (NULL keys never conflict). The
# order's first history row is written by the same statement, for the order it created.
INSERT_ORDER = """
    WITH created AS (
        INSERT INTO orders (order_id, customer_id, items, total_cents, status, deadline_at,
                            idempotency_key, request_fingerprint)
        VALUES (%(order_id)s, %(customer_id)s, %(items)s::jsonb, %(total_cents)s, %(status)s,
                %(deadline_at)s, %(idempotency_key)s, %(request_fingerprint)s)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING order_id, customer_id, items, total_cents, status, reason,
                  created_at, updated_at, deadline_at
    ), recorded AS (
        INSERT INTO order_history (order_id, from_status, to_status)
        SELECT order_id, NULL, status FROM created
    )
    SELECT * FROM created
"""
ORDER_OF_KEY = """
    SELECT order_id, customer_id, items, total_cents, status, reason,
           created_at, updated_at, deadline_at, request_fingerprint
    FROM orders WHERE idempotency_key = %(idempotency_key)s
"""
ORDER_BY_ID = """
    SELECT order_id, customer_id, items, total_cents, status, reason,
           created_at, updated_at, deadline_at
    FROM orders WHERE order_id = %(order_id)s
"""


@router.post("/orders", status_code=201, response_model=OrderOut)
async def create_order(
    body: CreateOrder,
    response: Response,
    uow: UnitOfWorkDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    order_id = uuid4()
    total = sum(item.quantity * item.unit_price_cents for item in body.items)
    deadline = datetime.now(UTC) + timedelta(seconds=settings.order_deadline_seconds)
    async with uow:
        row = await uow.sql.first(
            INSERT_ORDER,
            order_id=order_id,
            customer_id=body.customer_id,
            items=items_json(body.items),
            total_cents=total,
            status=Status.PENDING,
            deadline_at=deadline,
            idempotency_key=idempotency_key,
            request_fingerprint=_fingerprint(body) if idempotency_key else None,
        )
        if row is None:  # the key was used before: same body, same order; else refuse
            existing = await uow.sql.first(ORDER_OF_KEY, idempotency_key=idempotency_key)
            if existing.request_fingerprint != _fingerprint(body):
                raise HTTPException(422, "Idempotency-Key was already used with another body")
            response.status_code = 200
            response.headers["Location"] = f"/orders/{existing.order_id}"
            return existing._asdict()
        uow.emit(
            OrderCreated(
                order_id=order_id,
                customer_id=body.customer_id,
                items=body.items,
                total_cents=total,
                deadline_at=deadline,
            )
        )
        await uow.commit()
    response.headers["Location"] = f"/orders/{order_id}"
    return row._asdict()


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: UUID, database: DatabaseDep) -> Any:
    async with database.connect(autocommit=True) as sql:
        row = await sql.first(ORDER_BY_ID, order_id=order_id)
    if row is None:
        raise HTTPException(404, f"order {order_id} not found")
    return row._asdict()


@router.get("/orders", response_model=OrderList)
async def list_orders(
    database: DatabaseDep,
    status: Status | None = None,
    overdue: Annotated[
        bool, Query(description="only in-flight orders past their deadline")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    query = sa.select(*ORDER_COLUMNS).order_by(orders.c.created_at.desc(), orders.c.order_id)
    if status is not None:
        query = query.where(orders.c.status == status)
    if overdue:
        query = query.where(orders.c.status.in_(IN_FLIGHT), orders.c.deadline_at < sa.func.now())
    async with database.engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit).offset(offset))).all()
    return {"orders": [row._asdict() for row in rows]}


@router.get("/orders/{order_id}/history", response_model=History)
async def order_history_of(order_id: UUID, database: DatabaseDep) -> Any:
    async with database.engine.connect() as conn:
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


@router.post("/orders/{order_id}/cancel", response_model=OrderOut)
async def cancel_order(order_id: UUID, response: Response, uow: UnitOfWorkDep) -> Any:
    async with uow:
        try:
            status = await current_status(uow.sql, order_id)
        except LookupError:
            raise HTTPException(404, f"order {order_id} not found") from None
        if status is Status.CANCELLED:
            response.status_code = 200
        elif status in TERMINAL:
            raise HTTPException(409, f"order {order_id} is {status} and can no longer be cancelled")
        else:
            await move(uow.sql, order_id, Status.CANCELLED, reason="customer")
            uow.emit(OrderCancelled(order_id=order_id, reason="customer"))
            response.status_code = 202
        row = await uow.sql.first(ORDER_BY_ID, order_id=order_id)
        await uow.commit()
    return row._asdict()


def _fingerprint(body: CreateOrder) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
