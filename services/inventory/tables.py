"""The inventory service's schema, as its migrations create it at head: alembic compares the
migrations against this metadata (migrations/env.py, tests/integration/test_schema.py)."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import TIMESTAMPTZ
from shared.tables import cancellations_table, messaging_tables

metadata = sa.MetaData()

products = sa.Table(
    "products",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    # Running counters for the conditional decrement; the CHECKs make overselling impossible
    # even under a handler bug: the database refuses to go below zero.
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("available >= 0", name="products_available_not_negative"),
    sa.CheckConstraint("reserved >= 0", name="products_reserved_not_negative"),
)

# Every unit that came in, so available = restocks - reserved + released can be checked.
restocks = sa.Table(
    "restocks",
    metadata,
    sa.Column("restock_id", sa.Uuid, primary_key=True),
    sa.Column("sku", sa.Text, sa.ForeignKey("products.sku"), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("quantity > 0", name="restocks_quantity_positive"),
    sa.Index("restocks_sku", "sku"),
)

# Immutable once written: it is RELEASED when a release record points at it.
reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("reservation_id", sa.Uuid, primary_key=True),
    # Unique: an order reserves at most once, whatever the broker redelivers.
    sa.Column("order_id", sa.Uuid, nullable=False, unique=True),
    # The order's lines, exactly as reserved.
    sa.Column("items", JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

# The compensation record: stock given back, the reservation it reverses untouched.
releases = sa.Table(
    "releases",
    metadata,
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

cancelled_orders = cancellations_table(metadata)
outbox, inbox = messaging_tables(metadata)
