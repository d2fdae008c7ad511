"""What the saga relies on from the broker, shown on both brokers it runs on: this machine's
RabbitMQ (3.10 here) and RabbitMQ 4 in a container, the one docker-compose.yml ships.
docs/DESIGN.md ("RabbitMQ 3.10 and 4") records what differs and which test shows it."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from scripts.chaos.stream_loss import experiment
from scripts.stack.instances import Broker, own_broker
from shared import topology
from shared.system import Mode
from shared.topology import DEAD_LETTER_QUEUE_ARGUMENTS, DELIVERY_LIMIT, work_queue_arguments
from tests.conftest import BROKERS


@pytest.fixture(scope="module", params=BROKERS)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    node = own_broker(request.param, tmp_path_factory.mktemp("broker"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
async def channel(broker: Broker) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/")
    async with connection:
        yield await connection.channel(publisher_confirms=True)


async def returned_until_gone(channel: AbstractChannel, queue_name: str, times: int) -> int:
    """Take the one message and give it back with requeue, up to `times`; how often it came."""
    queue = await channel.get_queue(queue_name)
    for seen in range(times):
        message = await _get(queue)
        if message is None:
            return seen
        await message.nack(requeue=True)
    return times


async def _get(queue: aio_pika.abc.AbstractQueue) -> aio_pika.abc.AbstractIncomingMessage | None:
    for _ in range(50):  # a requeued message is back within moments
        if (message := await queue.get(no_ack=False, fail=False)) is not None:
            return message
        await asyncio.sleep(0.05)
    return None


async def declare_work_queue(channel: AbstractChannel, **changes: object) -> tuple[str, str]:
    """A work queue and its DLQ declared as shared/topology.py declares them."""
    name = f"behaviour-{uuid.uuid4().hex[:6]}"
    dlx = await channel.declare_exchange(f"{name}.dlx", "direct", auto_delete=True)
    dlq = await channel.declare_queue(f"{name}.dlq", arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
    await dlq.bind(dlx, routing_key=dlq.name)
    arguments = work_queue_arguments("x", Mode.CHOREOGRAPHY) | {
        "x-dead-letter-exchange": dlx.name,
        "x-dead-letter-routing-key": dlq.name,
    }
    arguments = {k: v for k, v in (arguments | changes).items() if v is not None}
    await channel.declare_queue(name, durable=True, arguments=arguments)
    await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=name)
    return name, dlq.name


async def test_the_explicit_delivery_limit_dead_letters_alike_on_both(
    channel: AbstractChannel,
) -> None:
    queue, dlq = await declare_work_queue(channel)

    delivered = await returned_until_gone(channel, queue, DELIVERY_LIMIT + 5)

    assert delivered == DELIVERY_LIMIT + 1  # the limit counts returns, not the first delivery
    dead = await _get(await channel.get_queue(dlq))
    assert dead is not None
    assert dead.headers["x-first-death-reason"] == "delivery_limit"


async def test_without_an_explicit_limit_the_brokers_differ(
    channel: AbstractChannel, broker: Broker
) -> None:
    queue, _ = await declare_work_queue(channel, **{"x-delivery-limit": None})

    delivered = await returned_until_gone(channel, queue, 30)

    version = await _version(broker)
    if version.startswith("3."):
        assert delivered == 30  # no limit at all: a crash-looping message loops for ever
    else:
        assert delivered == 21  # RabbitMQ 4's default limit of 20


async def _version(broker: Broker) -> str:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/")
    async with connection:
        return str(connection.transport.connection.server_properties["version"])  # type: ignore[union-attr]


async def test_every_confirmed_publish_reaches_the_stream_across_restarts_with_the_wait(
    broker: Broker,
) -> None:
    for noisy in ("asyncio", "aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    confirmed, missing = await experiment(broker, restarts=1, wait=True)
    assert confirmed > 100
    assert missing == 0


async def test_a_topology_switched_between_modes_routes_only_to_that_modes_queues(
    broker: Broker,
) -> None:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)

        async def depths_after(mode: Mode, *sends: tuple[str, str]) -> dict[str, int | None]:
            """What each queue holds after the sends (None: no such queue)."""
            exchanges = await topology.declare(connection, channel, [100], mode)
            names = ("payment.events", "payment.commands", "order.events")
            for name in names:
                await _purge_if_declared(connection, name)
            for exchange, key in sends:
                await exchanges[exchange].publish(aio_pika.Message(b"{}"), routing_key=key)
            return {name: await _purge_if_declared(connection, name) for name in names}

        events, commands = topology.EVENTS_EXCHANGE, topology.COMMANDS_EXCHANGE
        assert await depths_after(Mode.CHOREOGRAPHY, (events, "order.created")) == {
            "payment.events": 1, "payment.commands": None, "order.events": 0,
        }  # fmt: skip
        # Orchestrated: OrderCreated reaches no participant; the command and the refund's
        # reply do.
        assert await depths_after(
            Mode.ORCHESTRATION,
            (events, "order.created"), (commands, "payment.charge"), (events, "payment.refunded"),
        ) == {"payment.events": 0, "payment.commands": 1, "order.events": 1}  # fmt: skip
        # And back: the command queue is unbound, and order.events takes no refund it has no
        # handler for.
        assert await depths_after(
            Mode.CHOREOGRAPHY,
            (events, "order.created"), (commands, "payment.charge"), (events, "payment.refunded"),
        ) == {"payment.events": 1, "payment.commands": 0, "order.events": 0}  # fmt: skip


async def _purge_if_declared(connection: aio_pika.abc.AbstractConnection, name: str) -> int | None:
    """Empty the queue and say how many messages it held; None if there is no such queue (on a
    channel of its own, which a passive declaration of a missing queue closes)."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        return (await queue.purge()).message_count
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return None
    finally:
        if not channel.is_closed:
            await channel.close()


async def test_a_streams_offsets_increase_with_one_left_unused_at_each_new_segment(
    broker: Broker,
) -> None:
    """What the dashboard's position and invariant 7 rely on (docs/DESIGN.md, decision 20):
    each message at an offset of its own, increasing; and, once a publisher has written (an
    AMQP channel is a writer with an id), a new segment starts with a chunk of the stream's own
    that takes one offset, so the offsets have gaps. Alike on both brokers."""
    name = f"behaviour-stream-{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        arguments = topology.audit_arguments(segment_bytes=50_000)
        stream = await channel.declare_queue(name, durable=True, arguments=arguments)
        for n in range(300):
            body = aio_pika.Message(b"x" * 1_000, message_id=str(n))
            await channel.default_exchange.publish(body, routing_key=name)
        reading = await connection.channel()
        await reading.set_qos(prefetch_count=100)
        delivered: list[tuple[int, str | None]] = []
        queue = await reading.get_queue(name)
        async with queue.iterator(arguments={"x-stream-offset": "first"}) as messages:
            async for message in messages:
                await message.ack()
                delivered.append((int(str(message.headers["x-stream-offset"])), message.message_id))
                if len(delivered) == 300:
                    break
        await stream.delete()
    offsets = [offset for offset, _ in delivered]
    assert [message_id for _, message_id in delivered] == [str(n) for n in range(300)]
    assert offsets == sorted(set(offsets)), "not increasing"
    unused = sorted(set(range(offsets[-1])) - set(offsets))
    # 300 kB of bodies in segments of 50 kB: five or six new segments, an offset each.
    assert 5 <= len(unused) <= 7, unused
