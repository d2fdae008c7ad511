"""Trace context on the outbox: each event is published in the trace of the saga it belongs to.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from alembic import op

from shared.migrations import add_trace_context

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_trace_context()


def downgrade() -> None:
    op.drop_column("outbox", "trace_context")
