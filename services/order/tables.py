"""The order service's schema, as its migrations create it at head: alembic compares the
migrations against this metadata (migrations/env.py, tests/integration/test_schema.py)."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from shared.db import TIMESTAMPTZ
from shared.tables import messaging_tables

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
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
    # Unique, so a retried POST with the same key finds the order instead of making a second
    # one; NULLs (no key) never conflict.
    sa.Column("idempotency_key", sa.Text, unique=True),
    sa.Column("request_fingerprint", sa.Text),
    # The saga's trace, which its later cancel (by the customer or the deadline) continues;
    # NULL for orders placed before it existed.
    sa.Column("trace_context", JSONB),
    sa.CheckConstraint(
        "status IN ('PENDING', 'PAID', 'CONFIRMED', 'REJECTED', 'CANCELLED')",
        name="orders_status_known",
    ),
    sa.CheckConstraint("total_cents >= 0", name="orders_total_not_negative"),
    # The reaper's query: in-flight orders by deadline. Partial, so it holds only the few
    # in-flight orders, not the millions that finished.
    sa.Index(
        "orders_in_flight_deadline",
        "deadline_at",
        postgresql_where=sa.text("status IN ('PENDING', 'PAID')"),
    ),
    # GET /orders lists newest first, optionally by status.
    sa.Index("orders_created_at", "created_at"),
    sa.Index("orders_status_created_at", "status", "created_at"),
)

order_history = sa.Table(
    "order_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("order_id", sa.Uuid, sa.ForeignKey("orders.order_id"), nullable=False),
    # NULL for the creation row.
    sa.Column("from_status", sa.Text),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    # The message that caused the transition; NULL for API calls and the reaper.
    sa.Column("message_id", sa.Uuid),
    sa.Column("at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Index("order_history_order_id", "order_id", "id"),
)

# The orchestrator's (services/order/orchestrator.py); empty in choreography.
saga_instances = sa.Table(
    "saga_instances",
    metadata,
    sa.Column("saga_id", sa.Uuid, sa.ForeignKey("orders.order_id"), primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("step", sa.Text, nullable=False),
    # The compensations sent and not yet answered (refund, release).
    sa.Column("awaiting", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("sends", sa.Integer, nullable=False, server_default="0"),
    sa.Column("reason", sa.Text),
    # An unanswered compensation goes out again after this long, doubling each time.
    sa.Column("resend_seconds", sa.Float, nullable=False),
    # RUNNING: the order's deadline; COMPENSATING: when the compensations go out again.
    sa.Column("expires_at", TIMESTAMPTZ, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(
        "status IN ('RUNNING', 'COMPENSATING', 'COMPLETED', 'COMPENSATED', 'NEEDS_ATTENTION')",
        name="saga_instances_status_known",
    ),
    # The reaper's query: active sagas by expiry. Partial, so it holds only the few in flight.
    sa.Index(
        "saga_instances_active_expires_at",
        "expires_at",
        postgresql_where=sa.text("status IN ('RUNNING', 'COMPENSATING')"),
    ),
    sa.Index(
        "saga_instances_needing_attention",
        "saga_id",
        postgresql_where=sa.text("status = 'NEEDS_ATTENTION'"),
    ),
)

saga_history = sa.Table(
    "saga_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("saga_id", sa.Uuid, sa.ForeignKey("saga_instances.saga_id"), nullable=False),
    # NULL for the creation row.
    sa.Column("from_status", sa.Text),
    sa.Column("from_step", sa.Text),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("to_step", sa.Text, nullable=False),
    sa.Column("awaiting", ARRAY(sa.Text), nullable=False),
    # The commands this transition sent.
    sa.Column("sent", ARRAY(sa.Text), nullable=False),
    # The reply that caused it; NULL for the start, a cancel and the timers.
    sa.Column("message_id", sa.Uuid),
    sa.Column("at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Index("saga_history_saga_id", "saga_id", "id"),
)

outbox, inbox = messaging_tables(metadata)
