"""The transactional outbox: events written in the same transaction as the state change.

A relay (relay/) publishes the pending rows and marks them published once the broker confirmed
them. The insert trigger's NOTIFY wakes the relay at commit; it is a hint only, as the relay
also polls.
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import TIMESTAMPTZ
from shared.envelope import Envelope

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


def outbox_row(envelope: Envelope, routing_key: str) -> dict[str, object]:
    return {
        "message_id": envelope.message_id,
        "routing_key": routing_key,
        "body": envelope.model_dump(mode="json"),
    }
