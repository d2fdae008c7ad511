"""The inventory service's tables: stock, restocks, reservations, releases, cancelled orders,
and the outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations import create_cancellations_table, create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("sku", sa.Text, primary_key=True),
        # Running counters for the conditional decrement; the CHECKs make overselling
        # impossible even under a handler bug: the database refuses to go below zero.
        sa.Column("available", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("available >= 0", name="products_available_not_negative"),
        sa.CheckConstraint("reserved >= 0", name="products_reserved_not_negative"),
    )
    op.create_table(
        "restocks",
        # Every unit that came in, so available = restocks - reserved + released can be checked.
        sa.Column("restock_id", sa.Uuid, primary_key=True),
        sa.Column("sku", sa.Text, sa.ForeignKey("products.sku"), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("quantity > 0", name="restocks_quantity_positive"),
    )
    op.create_index("restocks_sku", "restocks", ["sku"])
    op.create_table(
        "reservations",
        # Immutable once written: it is RELEASED when a release record points at it.
        sa.Column("reservation_id", sa.Uuid, primary_key=True),
        # Unique: an order reserves at most once, whatever the broker redelivers.
        sa.Column("order_id", sa.Uuid, nullable=False, unique=True),
        # The order's lines, exactly as reserved.
        sa.Column("items", JSONB, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "releases",
        # The compensation record: stock given back, the reservation it reverses untouched.
        sa.Column("release_id", sa.Uuid, primary_key=True),
        # Unique: a reservation is released at most once.
        sa.Column(
            "reservation_id",
            sa.Uuid,
            sa.ForeignKey("reservations.reservation_id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    )
    create_cancellations_table()
    create_messaging_tables()


def downgrade() -> None:
    raise NotImplementedError("the saga's history is never dropped")
