"""The tables that several service databases hold beside their own, declared once: the outbox
and inbox every service has (shared/outbox.py, shared/inbox.py) and the cancelled orders of
payment and inventory (shared/cancellations.py). Each service's tables.py adds them to its
metadata; the migrations that created them (shared/migrations.py) are history.

The outbox's NOTIFY trigger and its function are not declared: alembic compares tables,
columns, constraints and indexes, never triggers or functions, so only the migration has them.
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import TIMESTAMPTZ


def messaging_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """The outbox and the inbox, with their indexes, added to `metadata`."""
    outbox = sa.Table(
        "outbox",
        metadata,
        # Identity order is the relay's publishing order and its claim key.
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        # The event's message_id, unique so an event is never written twice.
        sa.Column("message_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("routing_key", sa.Text, nullable=False),
        # The whole envelope as JSON, queryable with ->> when debugging.
        sa.Column("body", JSONB, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        # NULL until the broker confirmed the publish; then the row is history, pruned by age.
        sa.Column("published_at", TIMESTAMPTZ),
        # The W3C trace context the relay publishes with the event (shared/tracing.py); NULL
        # for rows written before it existed.
        sa.Column("trace_context", JSONB),
        # Partial: the relay's claim reads only pending rows, so it stays an index scan
        # however many published rows accumulate.
        sa.Index("outbox_pending", "id", postgresql_where=sa.text("published_at IS NULL")),
        # Pruning published rows by age (shared/housekeeping.py).
        sa.Index(
            "outbox_published_at",
            "published_at",
            postgresql_where=sa.text("published_at IS NOT NULL"),
        ),
    )
    inbox = sa.Table(
        "inbox",
        metadata,
        # The primary key is the deduplication: a second insert of one id conflicts.
        sa.Column("message_id", sa.Uuid, primary_key=True),
        sa.Column("message_type", sa.Text, nullable=False),
        sa.Column("received_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        # Pruning old inbox rows scans by age.
        sa.Index("inbox_received_at", "received_at"),
    )
    return outbox, inbox


def cancellations_table(metadata: sa.MetaData) -> sa.Table:
    """Orders whose OrderCancelled was seen, added to `metadata`: a late OrderCreated or
    PaymentSucceeded for one is never acted on, so the rows are kept for good."""
    return sa.Table(
        "cancelled_orders",
        metadata,
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    )
