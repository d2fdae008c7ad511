"""The transactional outbox: events written in the same transaction as the state change.

A relay (relay/) publishes the pending rows and marks them published once the broker confirmed
them. The insert trigger's NOTIFY wakes the relay at commit; it is a hint only, as the relay
also polls. Each row keeps the W3C trace context of the work that emitted it, which the relay
publishes as the message's headers (shared/tracing.py).
"""

import json

from shared.commands import MESSAGE_TYPES
from shared.db import Sql
from shared.envelope import Envelope
from shared.tracing import TraceContext

# The table and its NOTIFY trigger are created by shared/migrations.py
# (`create_messaging_tables`), in every service's first migration.
NOTIFY_CHANNEL = "outbox"

# Every row a transaction emits, in one statement and one round trip: a unit of work's, or all
# of a batch's (shared/batching.py). The rows are numbered in the order they are listed
# (`WITH ORDINALITY ... ORDER BY`: unnest's own order is not promised), which is the order the
# relay publishes them in. The arrays go in binary: in text, psycopg escapes every quote of
# every JSON body, one regular-expression substitution each, and that cost the order service
# 3% of its CPU.
APPEND = """
    INSERT INTO outbox (message_id, routing_key, body, trace_context)
    SELECT message_id, routing_key, body, trace_context
    FROM unnest(%(message_ids)b::uuid[], %(routing_keys)b::text[],
                %(bodies)b::jsonb[], %(trace_contexts)b::jsonb[])
         WITH ORDINALITY AS listed (message_id, routing_key, body, trace_context, position)
    ORDER BY position
"""

Row = tuple[Envelope, TraceContext]


async def append(sql: Sql, rows: list[Row]) -> None:
    """Add events or commands to the outbox, in the caller's transaction."""
    if not rows:
        return
    await sql.execute(
        APPEND,
        message_ids=[envelope.message_id for envelope, _ in rows],
        routing_keys=[MESSAGE_TYPES[envelope.type].routing_key for envelope, _ in rows],
        bodies=[envelope.model_dump_json() for envelope, _ in rows],
        trace_contexts=[json.dumps(context) if context else None for _, context in rows],
    )
