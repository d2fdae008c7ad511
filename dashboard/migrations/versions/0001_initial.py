"""The dashboard's read model: the stream's position, each saga, each message of the stream,
and the log of dead letters replayed from the dashboard.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    # One row: the offset of the next stream message to project, written in the same
    # transaction as the projection of the ones before it, so a crash never skips or doubles
    # one. `generation` changes with every rebuild; a follower of an older generation stops.
    op.create_table(
        "stream_position",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("projected_at", TIMESTAMPTZ),
        sa.CheckConstraint("id = 1", name="stream_position_one_row"),
    )
    op.execute("INSERT INTO stream_position (id, next_offset, generation) VALUES (1, 0, 1)")

    op.create_table(
        "sagas",
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
    )
    op.create_index("sagas_started_at", "sagas", ["started_at"])
    op.create_index("sagas_status_started_at", "sagas", ["status", "started_at"])
    op.create_index("sagas_customer_started_at", "sagas", ["customer_id", "started_at"])
    op.create_index("sagas_finished_at", "sagas", ["finished_at"])
    # The search by an order id's first characters (the short id of the logs).
    op.execute("CREATE INDEX sagas_order_id_text ON sagas ((order_id::text) text_pattern_ops)")
    # Stuck sagas are read among the few in flight or waiting for a compensation.
    op.create_index(
        "sagas_unsettled",
        "sagas",
        ["started_at"],
        postgresql_where=sa.text("status = 'IN_FLIGHT' OR compensation_pending"),
    )

    op.create_table(
        "stream_messages",
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
        # True when the stream already had this message_id: published again (a relay's retry,
        # a redelivery by hand), which the inboxes absorb.
        sa.Column("repeat", sa.Boolean, nullable=False),
        sa.Column("data", JSONB),
        sa.Column("trace_id", sa.Text),
    )
    op.create_index("stream_messages_order", "stream_messages", ["order_id", "stream_offset"])
    op.create_index("stream_messages_message_id", "stream_messages", ["message_id"])

    # Not derived from the stream, so a rebuild keeps it: who replayed which dead letter when.
    op.create_table(
        "replays",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("message_type", sa.Text),
        sa.Column("order_id", sa.Uuid),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("replayed_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("replays_message_id", "replays", ["message_id", "replayed_at"])


def downgrade() -> None:
    raise NotImplementedError("rebuild the projection instead: python -m dashboard rebuild")
