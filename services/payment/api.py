"""The payment service's HTTP API (SPEC.md, "HTTP")."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from services.payment.tables import accounts, charges, refunds
from shared.events import PRINTABLE, Integer
from shared.http import BODY, answers
from shared.service import DatabaseDep

router = APIRouter(tags=["payments"])

CustomerId = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]


class Deposit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_cents: Integer = Field(gt=0, le=10_000_000_000)


class Account(BaseModel):
    customer_id: str
    balance_cents: int


class Charge(BaseModel):
    payment_id: UUID
    amount_cents: int
    created_at: datetime


class Refund(BaseModel):
    refund_id: UUID
    payment_id: UUID
    amount_cents: int
    reason: str
    created_at: datetime


class Payments(BaseModel):
    order_id: UUID
    charges: list[Charge]
    refunds: list[Refund]


# The first deposit opens the account; every deposit is also a record of its own.
CREDIT = """
    INSERT INTO accounts (customer_id, balance_cents) VALUES (%(customer_id)s, %(amount_cents)s)
    ON CONFLICT (customer_id) DO UPDATE
    SET balance_cents = accounts.balance_cents + EXCLUDED.balance_cents, updated_at = now()
    RETURNING balance_cents
"""
RECORD_DEPOSIT = """
    INSERT INTO deposits (deposit_id, customer_id, amount_cents)
    VALUES (%(deposit_id)s, %(customer_id)s, %(amount_cents)s)
"""


@router.post(
    "/accounts/{customer_id}/deposits",
    status_code=201,
    response_model=Account,
    responses=answers(*BODY, 503),
)
async def deposit(customer_id: CustomerId, body: Deposit, database: DatabaseDep) -> Any:
    async with database.connect() as sql, sql.connection.transaction():
        amount = body.amount_cents
        balance = await sql.scalar(CREDIT, customer_id=customer_id, amount_cents=amount)
        await sql.execute(
            RECORD_DEPOSIT, deposit_id=uuid4(), customer_id=customer_id, amount_cents=amount
        )
    return {"customer_id": customer_id, "balance_cents": balance}


@router.get("/accounts/{customer_id}", response_model=Account, responses=answers(404, 422, 503))
async def get_account(customer_id: CustomerId, database: DatabaseDep) -> Any:
    async with database.reading() as conn:
        balance = await conn.scalar(
            sa.select(accounts.c.balance_cents).where(accounts.c.customer_id == customer_id)
        )
    if balance is None:
        raise HTTPException(404, f"account {customer_id} not found")
    return {"customer_id": customer_id, "balance_cents": balance}


@router.get("/payments", response_model=Payments, responses=answers(422, 503))
async def payments_of_order(order_id: UUID, database: DatabaseDep) -> Any:
    async with database.reading() as conn:
        charge_rows = await conn.execute(
            sa.select(charges.c.payment_id, charges.c.amount_cents, charges.c.created_at)
            .where(charges.c.order_id == order_id)
            .order_by(charges.c.created_at)
        )
        refund_rows = await conn.execute(
            sa.select(
                refunds.c.refund_id,
                refunds.c.payment_id,
                refunds.c.amount_cents,
                refunds.c.reason,
                refunds.c.created_at,
            )
            .where(refunds.c.order_id == order_id)
            .order_by(refunds.c.created_at)
        )
        return {
            "order_id": order_id,
            "charges": [row._asdict() for row in charge_rows],
            "refunds": [row._asdict() for row in refund_rows],
        }
