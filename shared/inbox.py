"""The inbox: ids of the messages whose effect is committed, so a redelivery has no effect."""

from shared.db import Sql
from shared.envelope import Envelope

# The table is created by shared/migrations.py (`create_messaging_tables`).
#
# One round trip: take the saga's advisory lock, then record the message id. The lock is taken
# first (the sub-select runs before the insert), so messages of one saga apply one at a time
# in this database; a concurrent delivery of the same id waits on the primary key until the
# first transaction ends, then sees the conflict: two copies can never both apply.
RECORD = """
    INSERT INTO inbox (message_id, message_type)
    SELECT %(message_id)s, %(message_type)s
    FROM (SELECT pg_advisory_xact_lock(hashtextextended(%(saga)s, 0))) AS saga_lock
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
"""


async def record(sql: Sql, envelope: Envelope) -> bool:
    """Lock the message's saga and insert its id; False if it was already there (a duplicate)."""
    inserted = await sql.scalar(
        RECORD,
        message_id=envelope.message_id,
        message_type=envelope.type,
        saga=str(envelope.correlation_id),
    )
    return inserted is not None
