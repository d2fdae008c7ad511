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

APPEND = """
    INSERT INTO outbox (message_id, routing_key, body, trace_context)
    VALUES (%(message_id)s, %(routing_key)s, %(body)s::jsonb, %(trace_context)s::jsonb)
"""


async def append(sql: Sql, envelope: Envelope, trace_context: TraceContext) -> None:
    """Add an event or a command to the outbox, in the caller's transaction."""
    await sql.execute(
        APPEND,
        message_id=envelope.message_id,
        routing_key=MESSAGE_TYPES[envelope.type].routing_key,
        body=envelope.model_dump_json(),
        trace_context=json.dumps(trace_context) if trace_context else None,
    )
