"""Trace context on the outbox, and on each order: the saga's trace, which its later cancel
(by the customer or the deadline) continues.

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
    add_trace_context("orders")


def downgrade() -> None:
    op.drop_column("outbox", "trace_context")
    op.drop_column("orders", "trace_context")
