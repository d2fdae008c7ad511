import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import TIMESTAMPTZ

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.Uuid, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("items", JSONB, nullable=False),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("deadline_at", TIMESTAMPTZ, nullable=False),
    sa.Column("idempotency_key", sa.Text, unique=True),
    sa.Column("request_fingerprint", sa.Text),
)

order_history = sa.Table(
    "order_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("order_id", sa.Uuid, sa.ForeignKey("orders.order_id"), nullable=False),
    sa.Column("from_status", sa.Text),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("message_id", sa.Uuid),
    sa.Column("at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)
