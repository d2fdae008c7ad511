"""The order service's tables: orders, their history, and the outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        # The lines as the customer sent them; an order never changes its lines.
        sa.Column("items", JSONB, nullable=False),
        sa.Column("total_cents", sa.BigInteger, nullable=False),
        # The saga's semantic lock: only services/order/state.py changes it.
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("deadline_at", TIMESTAMPTZ, nullable=False),
        # Unique, so a retried POST with the same key finds the order instead of making a
        # second one; NULLs (no key) never conflict.
        sa.Column("idempotency_key", sa.Text, unique=True),
        sa.Column("request_fingerprint", sa.Text),
        sa.CheckConstraint(
            "status IN ('PENDING', 'PAID', 'CONFIRMED', 'REJECTED', 'CANCELLED')",
            name="orders_status_known",
        ),
        sa.CheckConstraint("total_cents >= 0", name="orders_total_not_negative"),
    )
    # The reaper's query: in-flight orders by deadline. Partial, so it holds only the few
    # in-flight orders, not the millions that finished.
    op.create_index(
        "orders_in_flight_deadline",
        "orders",
        ["deadline_at"],
        postgresql_where=sa.text("status IN ('PENDING', 'PAID')"),
    )
    # GET /orders lists newest first, optionally by status.
    op.create_index("orders_created_at", "orders", ["created_at"])
    op.create_index("orders_status_created_at", "orders", ["status", "created_at"])

    op.create_table(
        "order_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("order_id", sa.Uuid, sa.ForeignKey("orders.order_id"), nullable=False),
        # NULL for the creation row.
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        # The message that caused the transition; NULL for API calls and the reaper.
        sa.Column("message_id", sa.Uuid),
        sa.Column("at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("order_history_order_id", "order_history", ["order_id", "id"])

    create_messaging_tables()


def downgrade() -> None:
    raise NotImplementedError("the saga's history is never dropped")
