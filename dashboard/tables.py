"""The dashboard's read model, as its migrations create it at head: alembic compares the
migrations against this metadata (migrations/env.py, tests/integration/test_schema.py)."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import TIMESTAMPTZ

metadata = sa.MetaData()

# One row: the offset of the next stream message to project, written in the same transaction
# as the projection of the ones before it, so a crash never skips or doubles one. `generation`
# changes with every rebuild; a follower of an older generation stops. The row itself is
# inserted by the first migration.
stream_position = sa.Table(
    "stream_position",
    metadata,
    # A SERIAL, as the migration made it (SQLAlchemy's default for an integer primary key),
    # though nothing uses its sequence: `autoincrement=False` would need a migration.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("projected_at", TIMESTAMPTZ),
    sa.CheckConstraint("id = 1", name="stream_position_one_row"),
)

sagas = sa.Table(
    "sagas",
    metadata,
    sa.Column("order_id", sa.Uuid, primary_key=True),
    # IN_FLIGHT, CONFIRMED, REJECTED, CANCELLED or COMPENSATED (dashboard/projection.py).
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text),  # the order's terminal state, once announced
    sa.Column("reason", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("total_cents", sa.BigInteger),
    sa.Column("started_at", TIMESTAMPTZ, nullable=False),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False),
    sa.Column("finished_at", TIMESTAMPTZ),
    sa.Column("deadline_at", TIMESTAMPTZ),
    sa.Column("steps", JSONB, nullable=False),  # what happened: charged, refunded, ...
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("retries", sa.Integer, nullable=False),
    # Copies of its messages published again (a relay's retry), and copies its consumers'
    # inboxes absorbed: the two halves of at-least-once delivery.
    sa.Column("repeats", sa.Integer, nullable=False),
    sa.Column("duplicates", sa.Integer, nullable=False),
    sa.Column("dead_letters", sa.Integer, nullable=False),
    sa.Column("last_type", sa.Text),
    sa.Column("last_producer", sa.Text),
    sa.Column("compensation_pending", sa.Boolean, nullable=False),
    sa.Column("trace_id", sa.Text),
    sa.Index("sagas_started_at", "started_at"),
    sa.Index("sagas_status_started_at", "status", "started_at"),
    sa.Index("sagas_customer_started_at", "customer_id", "started_at"),
    sa.Index("sagas_finished_at", "finished_at"),
    # Stuck sagas are read among the few in flight or waiting for a compensation.
    sa.Index(
        "sagas_unsettled",
        "started_at",
        postgresql_where=sa.text("status = 'IN_FLIGHT' OR compensation_pending"),
    ),
)

# The search by an order id's first characters (the short id of the logs): text_pattern_ops
# serves `LIKE 'prefix%'` whatever the database's collation. postgresql_ops names the
# expression by its label.
sa.Index(
    "sagas_order_id_text",
    sa.cast(sagas.c.order_id, sa.Text).label("order_id_text"),
    postgresql_ops={"order_id_text": "text_pattern_ops"},
)

stream_messages = sa.Table(
    "stream_messages",
    metadata,
    # A BIGSERIAL, like stream_position.id, though the offset is always the stream's.
    sa.Column("stream_offset", sa.BigInteger, primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("order_id", sa.Uuid),  # NULL for a message that names no saga (poison)
    # event (saga.events), observation (saga.observations) or unreadable.
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("producer", sa.Text),
    sa.Column("causation_id", sa.Text),
    sa.Column("occurred_at", TIMESTAMPTZ),
    sa.Column("projected_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    # True when the stream already had this message_id: published again (a relay's retry, a
    # redelivery by hand), which the inboxes absorb.
    sa.Column("repeat", sa.Boolean, nullable=False),
    sa.Column("data", JSONB),
    sa.Column("trace_id", sa.Text),
    sa.Index("stream_messages_order", "order_id", "stream_offset"),
    sa.Index("stream_messages_message_id", "message_id"),
)

# Not derived from the stream, so a rebuild keeps it: who replayed which dead letter when.
replays = sa.Table(
    "replays",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("message_type", sa.Text),
    sa.Column("order_id", sa.Uuid),
    sa.Column("operator", sa.Text, nullable=False),
    sa.Column("replayed_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Index("replays_message_id", "message_id", "replayed_at"),
)
