"""The inbox: ids of the messages whose effect is committed, so a redelivery has no effect."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import TIMESTAMPTZ
from shared.envelope import Envelope
from shared.outbox import metadata

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("message_id", sa.Uuid, primary_key=True),
    sa.Column("message_type", sa.Text, nullable=False),
    sa.Column("received_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Index("inbox_received_at", "received_at"),
)


async def record(conn: AsyncConnection, envelope: Envelope) -> bool:
    """Insert the message id; False if it was already there (a duplicate).

    A concurrent delivery of the same id waits on the primary key until the first transaction
    ends, then sees the conflict: two copies can never both apply.
    """
    inserted = await conn.scalar(
        insert(inbox)
        .values(message_id=envelope.message_id, message_type=envelope.type)
        .on_conflict_do_nothing()
        .returning(inbox.c.message_id)
    )
    return inserted is not None
