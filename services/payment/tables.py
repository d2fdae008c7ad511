"""The payment service's schema, as its migrations create it at head: alembic compares the
migrations against this metadata (migrations/env.py, tests/integration/test_schema.py)."""

import sqlalchemy as sa

from shared.db import TIMESTAMPTZ
from shared.tables import cancellations_table, messaging_tables

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    # A running balance for the balance guard's one-statement debit; the CHECK makes an
    # overdraft impossible even if a handler forgot the guard.
    sa.Column("balance_cents", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("balance_cents >= 0", name="accounts_balance_not_negative"),
)

# Every credit from outside, so balance = deposits - charges + refunds can be checked.
deposits = sa.Table(
    "deposits",
    metadata,
    sa.Column("deposit_id", sa.Uuid, primary_key=True),
    sa.Column("customer_id", sa.Text, sa.ForeignKey("accounts.customer_id"), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("amount_cents > 0", name="deposits_amount_positive"),
    sa.Index("deposits_customer_id", "customer_id"),
)

charges = sa.Table(
    "charges",
    metadata,
    sa.Column("payment_id", sa.Uuid, primary_key=True),
    # Unique: an order is charged at most once, whatever the broker redelivers.
    sa.Column("order_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("customer_id", sa.Text, sa.ForeignKey("accounts.customer_id"), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("amount_cents >= 0", name="charges_amount_not_negative"),
    sa.Index("charges_customer_id", "customer_id"),
)

# A compensation is a new record: the charge it reverses is never updated or deleted.
refunds = sa.Table(
    "refunds",
    metadata,
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

cancelled_orders = cancellations_table(metadata)
outbox, inbox = messaging_tables(metadata)
