"""The orchestrator's saga instances and their history (SPEC.md, "Orchestration mode"). Empty in
choreography.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

from shared.db import TIMESTAMPTZ

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATUSES = "'RUNNING', 'COMPENSATING', 'COMPLETED', 'COMPENSATED', 'NEEDS_ATTENTION'"


def upgrade() -> None:
    op.create_table(
        "saga_instances",
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
        sa.CheckConstraint(f"status IN ({STATUSES})", name="saga_instances_status_known"),
    )
    # The reaper's query: active sagas by expiry. Partial, so it holds only the few in flight.
    op.create_index(
        "saga_instances_active_expires_at",
        "saga_instances",
        ["expires_at"],
        postgresql_where=sa.text("status IN ('RUNNING', 'COMPENSATING')"),
    )
    op.create_index(
        "saga_instances_needing_attention",
        "saga_instances",
        ["saga_id"],
        postgresql_where=sa.text("status = 'NEEDS_ATTENTION'"),
    )
    op.create_table(
        "saga_history",
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
    )
    op.create_index("saga_history_saga_id", "saga_history", ["saga_id", "id"])


def downgrade() -> None:
    op.drop_table("saga_history")
    op.drop_table("saga_instances")
