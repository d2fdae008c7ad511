"""What a consumer saw happen to a message on the way, published for anyone reading the audit
stream (the dashboard's timeline): a retry with its attempt count, a dead letter with its
reason, a redelivery absorbed as a duplicate.

These are not events of the saga: they change no state, nothing consumes them, and they travel
on an exchange of their own, `saga.observations`, bound to `saga.audit` beside `saga.events`.
They are published best effort, after the fact, on the consumer's confirming channel: one lost
to a broker outage costs a mark on a timeline, never a message. The body has the envelope's
shape (shared/envelope.py) with the message it is about as its cause.
"""

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

logger = logging.getLogger("consumer")

OBSERVATIONS_EXCHANGE = "saga.observations"
RETRIED = "MessageRetried"
DEAD_LETTERED = "MessageDeadLettered"
DUPLICATE = "DuplicateIgnored"
KINDS = (RETRIED, DEAD_LETTERED, DUPLICATE)
PUBLISH_TIMEOUT_SECONDS = 2


def body_of(
    service: str, kind: str, message: AbstractIncomingMessage, **data: Any
) -> dict[str, Any]:
    return {
        "message_id": str(uuid4()),
        "type": kind,
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": message.correlation_id,
        "causation_id": message.message_id,
        "producer": service,
        "data": {"message_type": message.type, **data},
    }


async def observe(
    channel: AbstractChannel | None,
    service: str,
    kind: str,
    message: AbstractIncomingMessage,
    **data: Any,
) -> None:
    """Publish what happened to `message`; a failure is logged, never raised."""
    if channel is None:
        return
    body = body_of(service, kind, message, **data)
    try:
        exchange = await channel.get_exchange(OBSERVATIONS_EXCHANGE, ensure=False)
        observation = Message(
            json.dumps(body).encode(),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=body["message_id"],
            correlation_id=message.correlation_id,
            type=kind,
            headers={
                key: value
                for key, value in message.headers.items()
                if key in ("traceparent", "tracestate")
            },
        )
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            await exchange.publish(observation, routing_key=f"observed.{service}")
    except Exception as exc:  # best effort: the message itself is handled either way
        logger.debug("observation %s of %s not published: %s", kind, message.message_id, exc)
