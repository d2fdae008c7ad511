"""The consumer's acks (shared/acks.py) on the run's broker: the acks of one turn of the event
loop leave as one frame, and an ack with `multiple` never covers a delivery that has not
settled: one still being worked on, or one given back to the queue."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from scripts.stack import Stack
from shared.acks import Acks
from shared.system import Mode

pytestmark = pytest.mark.only_in(Mode.CHOREOGRAPHY)  # a queue of its own: either stack will do


class Frames:
    """The `basic.ack` frames a channel writes, as (delivery tag, multiple)."""

    def __init__(self) -> None:
        self.written: list[tuple[int, bool]] = []

    async def watch(self, channel: AbstractChannel) -> None:
        amqp = await channel.get_underlay_channel()  # aiormq's: aio-pika's messages ack on it
        send = amqp.basic_ack

        async def basic_ack(delivery_tag: int, multiple: bool = False, wait: bool = True) -> None:
            self.written.append((delivery_tag, multiple))
            await send(delivery_tag, multiple, wait)

        amqp.basic_ack = basic_ack  # type: ignore[method-assign]


@pytest.fixture
async def queue(stack: Stack) -> AsyncIterator[AbstractQueue]:
    """A quorum queue of its own on the run's vhost, holding five messages `0` to `4`."""
    connection = await aio_pika.connect(stack.config.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            f"acks-{uuid.uuid4().hex[:6]}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        for number in range(5):
            await channel.default_exchange.publish(
                aio_pika.Message(str(number).encode()), routing_key=queue.name
            )
        try:
            yield queue
        finally:
            await queue.delete(if_unused=False, if_empty=False)


async def taken(
    stack: Stack, queue: AbstractQueue
) -> tuple[aio_pika.abc.AbstractConnection, Frames, list[AbstractIncomingMessage]]:
    """A consumer's connection holding the queue's five deliveries, and its ack frames."""
    connection = await aio_pika.connect(stack.config.amqp_url)
    channel = await connection.channel()
    frames = Frames()
    await frames.watch(channel)
    own = await channel.get_queue(queue.name)
    messages = []
    for _ in range(5):
        message = await own.get(no_ack=False, timeout=5)
        assert message is not None
        messages.append(message)
    return connection, frames, messages


async def left_in(queue: AbstractQueue) -> list[str]:
    """The bodies the broker still has once the consumer is gone: what it never settled."""
    bodies = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        bodies.append(message.body.decode())
    return sorted(bodies)


async def wait_until_ready(queue: AbstractQueue, count: int) -> None:
    for _ in range(100):  # the broker requeues a closed channel's deliveries within moments
        declared = await queue.channel.declare_queue(queue.name, passive=True)
        if declared.declaration_result.message_count == count:
            return
        await asyncio.sleep(0.05)


async def test_the_acks_of_one_turn_leave_as_one_frame(stack: Stack, queue: AbstractQueue) -> None:
    acks = Acks()
    connection, frames, messages = await taken(stack, queue)
    async with connection:
        for message in messages:
            acks.delivered(message)
        await asyncio.gather(*(acks.ack(message) for message in reversed(messages)))
        assert frames.written == [(messages[-1].delivery_tag, True)]
    await wait_until_ready(queue, 0)
    assert await left_in(queue) == []


async def test_an_unsettled_delivery_is_never_covered_by_a_later_ack(
    stack: Stack, queue: AbstractQueue
) -> None:
    acks = Acks()
    connection, frames, messages = await taken(stack, queue)
    async with connection:
        for message in messages:
            acks.delivered(message)
        tags = [message.delivery_tag for message in messages]
        # `2` is still being worked on when the others settle.
        await asyncio.gather(*(acks.ack(messages[i]) for i in (0, 1, 3, 4)))
        assert frames.written == [(tags[1], True), (tags[3], False), (tags[4], False)]
    # The consumer dies before `2` settles: the broker still has it, and only it.
    await wait_until_ready(queue, 1)
    assert await left_in(queue) == ["2"]


async def test_once_the_oldest_settles_the_run_behind_it_leaves_in_one_frame(
    stack: Stack, queue: AbstractQueue
) -> None:
    acks = Acks()
    connection, frames, messages = await taken(stack, queue)
    async with connection:
        for message in messages:
            acks.delivered(message)
        tags = [message.delivery_tag for message in messages]
        await asyncio.gather(*(acks.ack(messages[i]) for i in (1, 2)))
        await acks.ack(messages[0])
        await asyncio.gather(*(acks.ack(messages[i]) for i in (3, 4)))
        assert frames.written == [
            (tags[1], False), (tags[2], False), (tags[0], True), (tags[4], True)
        ]  # fmt: skip
    await wait_until_ready(queue, 0)
    assert await left_in(queue) == []


async def test_a_requeued_delivery_leaves_before_any_ack_that_could_cover_it(
    stack: Stack, queue: AbstractQueue
) -> None:
    acks = Acks()
    connection, frames, messages = await taken(stack, queue)
    async with connection:
        for message in messages:
            acks.delivered(message)
        tags = [message.delivery_tag for message in messages]
        await asyncio.gather(
            acks.ack(messages[0]), acks.nack(messages[1]), *(acks.ack(m) for m in messages[2:])
        )
        # Still on its way back while the others settled: they went alone, past it.
        assert frames.written == [(tags[0], True), (tags[2], False), (tags[3], False),
                                  (tags[4], False)]  # fmt: skip
        # Given back, not acked: the broker has `1` to deliver again.
        await wait_until_ready(queue, 1)
    assert await left_in(queue) == ["1"]


async def test_a_delivery_of_a_closed_channel_fails_its_ack(
    stack: Stack, queue: AbstractQueue
) -> None:
    acks = Acks()
    connection, _, messages = await taken(stack, queue)
    for message in messages:
        acks.delivered(message)
    await connection.close()
    acks.new_channel()
    with pytest.raises(Exception):  # noqa: B017 (aio-pika's closed-channel error)
        await acks.ack(messages[0])
    await wait_until_ready(queue, 5)
    assert await left_in(queue) == ["0", "1", "2", "3", "4"]
