"""The payment service's tables: wallets, deposits, charges, refunds, cancelled orders, and the
outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_cancellations_table, create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("customer_id", sa.Text, primary_key=True),
        # A running balance for the balance guard's one-statement debit; the CHECK makes an
        # overdraft impossible even if a handler forgot the guard.
        sa.Column("balance_cents", sa.BigInteger, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("balance_cents >= 0", name="accounts_balance_not_negative"),
    )
    op.create_table(
        "deposits",
        # Every credit from outside, so balance = deposits - charges + refunds can be checked.
        sa.Column("deposit_id", sa.Uuid, primary_key=True),
        sa.Column("customer_id", sa.Text, sa.ForeignKey("accounts.customer_id"), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("amount_cents > 0", name="deposits_amount_positive"),
    )
    op.create_index("deposits_customer_id", "deposits", ["customer_id"])
    op.create_table(
        "charges",
        sa.Column("payment_id", sa.Uuid, primary_key=True),
        # Unique: an order is charged at most once, whatever the broker redelivers.
        sa.Column("order_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("customer_id", sa.Text, sa.ForeignKey("accounts.customer_id"), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("amount_cents >= 0", name="charges_amount_not_negative"),
    )
    op.create_index("charges_customer_id", "charges", ["customer_id"])
    op.create_table(
        "refunds",
        # A compensation is a new record: the charge it reverses is never updated or deleted.
        sa.Column("refund_id", sa.Uuid, primary_key=True),
        # Unique on both: a charge is refunded at most once, an order at most once.
        sa.Column(
            "payment_id", sa.Uuid, sa.ForeignKey("charges.payment_id"), nullable=False, unique=True
        ),
        sa.Column("order_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    )
    create_cancellations_table()
    create_messaging_tables()


def downgrade() -> None:
    raise NotImplementedError("the saga's history is never dropped")
