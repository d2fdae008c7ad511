"""The broker: events published straight to the exchange, as a producer (or a duplicate, or a
late or reordered event) would send them."""

import contextlib
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractExchange

from shared.envelope import Envelope, wrap
from shared.events import Event
from tests.clients import Reachable


@contextlib.asynccontextmanager
async def broker(stack: Reachable) -> AsyncIterator[AbstractExchange]:
    """A confirming channel on the run's vhost, for publishing events straight to the exchange."""
    connection = await aio_pika.connect(stack.config.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        yield await channel.get_exchange("saga.events")
    finally:
        await connection.close()


async def publish(exchange: AbstractExchange, envelope: Envelope, routing_key: str) -> None:
    body = envelope.model_dump_json().encode()
    message = aio_pika.Message(
        body,
        message_id=str(envelope.message_id),
        correlation_id=str(envelope.correlation_id),
        type=envelope.type,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await exchange.publish(message, routing_key=routing_key, mandatory=True)


async def publish_event(exchange: AbstractExchange, event: Event) -> Envelope:
    """Publish an event as its producer would, with a fresh message id; return its envelope."""
    envelope = wrap(event, producer="test", causation_id=None)
    await publish(exchange, envelope, event.routing_key)
    return envelope
