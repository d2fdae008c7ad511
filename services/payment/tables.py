import sqlalchemy as sa

from shared.db import TIMESTAMPTZ

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("balance_cents", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

deposits = sa.Table(
    "deposits",
    metadata,
    sa.Column("deposit_id", sa.Uuid, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

charges = sa.Table(
    "charges",
    metadata,
    sa.Column("payment_id", sa.Uuid, primary_key=True),
    sa.Column("order_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("refund_id", sa.Uuid, primary_key=True),
    sa.Column("payment_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("order_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)
