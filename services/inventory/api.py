"""The inventory service's HTTP API (SPEC.md, "HTTP")."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from services.inventory.tables import products, releases, reservations
from shared.events import PRINTABLE, Integer, Item
from shared.http import BODY, answers
from shared.service import DatabaseDep

router = APIRouter(tags=["inventory"])

Sku = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]


class Restock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Integer = Field(gt=0, le=1_000_000_000)


class Product(BaseModel):
    sku: str
    available: int
    reserved: int


class Reservation(BaseModel):
    reservation_id: UUID
    status: Literal["RESERVED", "RELEASED"]
    items: list[Item]
    created_at: datetime


class Reservations(BaseModel):
    order_id: UUID
    reservations: list[Reservation]


PRODUCT_COLUMNS = [products.c.sku, products.c.available, products.c.reserved]


# The first restock creates the product; every restock is also a record of its own.
RESTOCK = """
    INSERT INTO products (sku, available, reserved) VALUES (%(sku)s, %(quantity)s, 0)
    ON CONFLICT (sku) DO UPDATE
    SET available = products.available + EXCLUDED.available, updated_at = now()
    RETURNING sku, available, reserved
"""
RECORD_RESTOCK = """
    INSERT INTO restocks (restock_id, sku, quantity) VALUES (%(restock_id)s, %(sku)s, %(quantity)s)
"""


@router.post(
    "/products/{sku}/restock",
    status_code=201,
    response_model=Product,
    responses=answers(*BODY, 503),
)
async def restock(sku: Sku, body: Restock, database: DatabaseDep) -> Any:
    async with database.connect() as sql, sql.connection.transaction():
        row = await sql.first(RESTOCK, sku=sku, quantity=body.quantity)
        await sql.execute(RECORD_RESTOCK, restock_id=uuid4(), sku=sku, quantity=body.quantity)
    return row._asdict()


@router.get("/products/{sku}", response_model=Product, responses=answers(404, 422, 503))
async def get_product(sku: Sku, database: DatabaseDep) -> Any:
    async with database.reading() as conn:
        row = (
            await conn.execute(sa.select(*PRODUCT_COLUMNS).where(products.c.sku == sku))
        ).one_or_none()
    if row is None:
        raise HTTPException(404, f"product {sku} not found")
    return row._asdict()


@router.get("/reservations", response_model=Reservations, responses=answers(422, 503))
async def reservations_of_order(order_id: UUID, database: DatabaseDep) -> Any:
    # A reservation is never updated: it is RELEASED when a release record points at it.
    status = sa.case((releases.c.release_id.is_(None), "RESERVED"), else_="RELEASED")
    async with database.reading() as conn:
        rows = await conn.execute(
            sa.select(
                reservations.c.reservation_id,
                status.label("status"),
                reservations.c["items"],
                reservations.c.created_at,
            )
            .outerjoin(releases, releases.c.reservation_id == reservations.c.reservation_id)
            .where(reservations.c.order_id == order_id)
            .order_by(reservations.c.created_at)
        )
        return {"order_id": order_id, "reservations": [row._asdict() for row in rows]}
