"""The relay (relay/relay.py) on a scratch database of the order service's and this machine's
RabbitMQ: a publish the broker cannot route is an error, and its row stays pending until a
route exists; a routed one goes out with the properties SPEC.md names, and only then is it
marked."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange

from relay.relay import Relay
from relay.settings import RelaySettings
from shared.envelope import wrap
from shared.events import Item, OrderCreated
from shared.outbox import append
from shared.topology import EVENTS_EXCHANGE
from tests.clients.database import rows, scratch_database
from tests.polling import eventually

MACHINE_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    async with scratch_database("order") as database:
        relay = Relay(RelaySettings(database_url=database.url, publish_timeout_seconds=5))
        await relay.database.open()
        try:
            yield relay
        finally:
            await relay.database.close()


@pytest.fixture
async def channel() -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(MACHINE_BROKER)
    async with connection:
        yield await connection.channel(publisher_confirms=True, on_return_raises=True)


@pytest.fixture
async def exchange(channel: AbstractChannel) -> AsyncIterator[AbstractExchange]:
    """An exchange of the test's own, in the relay's place of saga.events: nothing bound."""
    declared = await channel.declare_exchange(
        f"sagatest.relay.{uuid.uuid4().hex[:8]}", aio_pika.ExchangeType.TOPIC, auto_delete=True
    )
    try:
        yield declared
    finally:
        await declared.delete()


async def an_order_created(relay: Relay) -> str:
    """One OrderCreated in the outbox, as placing an order writes it; its message id."""
    event = OrderCreated(
        order_id=uuid.uuid4(),
        customer_id="alice",
        items=[Item(sku="shirt", quantity=1, unit_price_cents=100)],
        total_cents=100,
        deadline_at=datetime.now(UTC) + timedelta(seconds=30),
    )
    envelope = wrap(event, producer="order", causation_id=None)
    async with relay.database.connect() as sql:
        await append(sql, [(envelope, {})])
        await sql.commit()
    return str(envelope.message_id)


async def published_at(relay: Relay) -> list[object]:
    return [row.published_at for row in await rows(relay.database, "SELECT * FROM outbox")]


async def test_an_unroutable_publish_is_an_error_and_its_row_stays_pending_until_routed(
    relay: Relay, channel: AbstractChannel, exchange: AbstractExchange
) -> None:
    message_id = await an_order_created(relay)

    # Nothing is bound to the exchange: the broker returns the mandatory message.
    assert await relay.publish_batch({EVENTS_EXCHANGE: exchange}) == (1, 1)
    assert await published_at(relay) == [None]
    assert await relay.publish_batch({EVENTS_EXCHANGE: exchange}) == (1, 1)  # tried again
    assert await published_at(relay) == [None]

    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")
    assert await relay.publish_batch({EVENTS_EXCHANGE: exchange}) == (1, 0)
    assert all(at is not None for at in await published_at(relay))
    assert await relay.publish_batch({EVENTS_EXCHANGE: exchange}) == (0, 0)  # marked: never again

    message = await eventually(lambda: queue.get(fail=False), 5, "the message in the queue")
    await message.ack()
    assert (message.message_id, message.type, message.routing_key) == (
        message_id, "OrderCreated", "order.created"
    )  # fmt: skip
    assert message.content_type == "application/json"
    assert message.delivery_mode is aio_pika.DeliveryMode.PERSISTENT
    assert message.timestamp is not None
    assert await queue.get(fail=False) is None  # once
