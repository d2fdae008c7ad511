import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

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

# The orchestrator's (services/order/orchestrator.py); empty in choreography.
saga_instances = sa.Table(
    "saga_instances",
    metadata,
    sa.Column("saga_id", sa.Uuid, sa.ForeignKey("orders.order_id"), primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("step", sa.Text, nullable=False),
    sa.Column("awaiting", ARRAY(sa.Text), nullable=False),
    sa.Column("sends", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("resend_seconds", sa.Float, nullable=False),
    sa.Column("expires_at", TIMESTAMPTZ, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

saga_history = sa.Table(
    "saga_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("saga_id", sa.Uuid, sa.ForeignKey("saga_instances.saga_id"), nullable=False),
    sa.Column("from_status", sa.Text),
    sa.Column("from_step", sa.Text),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("to_step", sa.Text, nullable=False),
    sa.Column("awaiting", ARRAY(sa.Text), nullable=False),
    sa.Column("sent", ARRAY(sa.Text), nullable=False),
    sa.Column("message_id", sa.Uuid),
    sa.Column("at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)
