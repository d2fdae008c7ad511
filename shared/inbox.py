"""The inbox: ids of the messages whose effect is committed, so a redelivery has no effect."""

from collections.abc import Sequence

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


# The same for every message of a batch (shared/batching.py), in one round trip: the sagas'
# locks are taken in the order the messages are listed, as one at a time would take them.
RECORD_ALL = """
    INSERT INTO inbox (message_id, message_type)
    SELECT listed.message_id, listed.message_type
    FROM (SELECT * FROM unnest(%(message_ids)s::uuid[], %(message_types)s::text[],
                               %(sagas)s::text[])
                   WITH ORDINALITY AS listed (message_id, message_type, saga, position)
          ORDER BY position) AS listed
    CROSS JOIN LATERAL (SELECT pg_advisory_xact_lock(hashtextextended(listed.saga, 0))) AS lock
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
"""


async def record_all(sql: Sql, envelopes: Sequence[Envelope]) -> list[bool]:
    """`record` for each envelope, in one statement: for each, False if it is a duplicate (of
    a message committed before, or of one listed before it)."""
    rows = await sql.all(
        RECORD_ALL,
        message_ids=[envelope.message_id for envelope in envelopes],
        message_types=[envelope.type for envelope in envelopes],
        sagas=[str(envelope.correlation_id) for envelope in envelopes],
    )
    inserted = {row.message_id for row in rows}
    recorded = []
    for envelope in envelopes:
        recorded.append(envelope.message_id in inserted)
        inserted.discard(envelope.message_id)  # a second copy in the list is a duplicate
    return recorded
