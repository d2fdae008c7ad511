"""The transactional outbox: events written in the same transaction as the state change.

A relay (relay/) publishes the pending rows and marks them published once the broker confirmed
them. The insert trigger's NOTIFY wakes the relay at commit; it is a hint only, as the relay
also polls.
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import TIMESTAMPTZ, Sql
from shared.envelope import Envelope
from shared.events import EVENT_TYPES

metadata = sa.MetaData()

NOTIFY_CHANNEL = "outbox"

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("message_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("routing_key", sa.Text, nullable=False),
    sa.Column("body", JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("published_at", TIMESTAMPTZ),
    sa.Index("outbox_pending", "id", postgresql_where=sa.text("published_at IS NULL")),
)


APPEND = """
    INSERT INTO outbox (message_id, routing_key, body)
    VALUES (%(message_id)s, %(routing_key)s, %(body)s::jsonb)
"""


async def append(sql: Sql, envelope: Envelope) -> None:
    """Add an event to the outbox, in the caller's transaction."""
    await sql.execute(
        APPEND,
        message_id=envelope.message_id,
        routing_key=EVENT_TYPES[envelope.type].routing_key,
        body=envelope.model_dump_json(),
    )
