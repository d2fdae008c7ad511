"""The consumer's acks (shared/acks.py) on the run's broker: the acks of one turn of the event
loop leave as one frame, and an ack with `multiple` never covers a delivery that has not
settled: one still being worked on, or one given back to the queue."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

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


@dataclass
class Taken:
    """A consumer's connection holding the queue's five deliveries, each held by `acks`, and
    the ack frames it wrote."""

    connection: AbstractConnection
    frames: Frames
    messages: list[AbstractIncomingMessage]
    acks: Acks = field(default_factory=Acks)

    @property
    def tags(self) -> list[int]:
        return [message.delivery_tag or 0 for message in self.messages]


@pytest.fixture
async def taken(stack: Stack, queue: AbstractQueue) -> AsyncIterator[Taken]:
    connection = await aio_pika.connect(stack.config.amqp_url)
    try:
        channel = await connection.channel()
        frames = Frames()
        await frames.watch(channel)
        own = await channel.get_queue(queue.name)
        held = Taken(connection, frames, [])
        for _ in range(5):
            message = await own.get(no_ack=False, timeout=5)
            assert message is not None
            held.acks.delivered(message)
            held.messages.append(message)
        yield held
    finally:  # the consumer dies, if its test did not end it: what it held goes back
        await connection.close()


async def left_in(queue: AbstractQueue, count: int) -> list[str]:
    """The bodies the broker still has once the consumer is gone (what it never settled), once
    it has `count` of them ready."""
    for _ in range(100):  # the broker requeues a closed channel's deliveries within moments
        declared = await queue.channel.declare_queue(queue.name, passive=True)
        if declared.declaration_result.message_count == count:
            break
        await asyncio.sleep(0.05)
    bodies = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        bodies.append(message.body.decode())
    return sorted(bodies)


async def test_the_acks_of_one_turn_leave_as_one_frame(taken: Taken, queue: AbstractQueue) -> None:
    await asyncio.gather(*(taken.acks.ack(message) for message in reversed(taken.messages)))
    assert taken.frames.written == [(taken.tags[-1], True)]
    await taken.connection.close()
    assert await left_in(queue, 0) == []


async def test_an_unsettled_delivery_is_never_covered_by_a_later_ack(
    taken: Taken, queue: AbstractQueue
) -> None:
    # `2` is still being worked on when the others settle.
    await asyncio.gather(*(taken.acks.ack(taken.messages[i]) for i in (0, 1, 3, 4)))
    tags = taken.tags
    assert taken.frames.written == [(tags[1], True), (tags[3], False), (tags[4], False)]
    # The consumer dies before `2` settles: the broker still has it, and only it.
    await taken.connection.close()
    assert await left_in(queue, 1) == ["2"]


async def test_once_the_oldest_settles_the_run_behind_it_leaves_in_one_frame(
    taken: Taken, queue: AbstractQueue
) -> None:
    acks, messages, tags = taken.acks, taken.messages, taken.tags
    await asyncio.gather(*(acks.ack(messages[i]) for i in (1, 2)))
    await acks.ack(messages[0])
    await asyncio.gather(*(acks.ack(messages[i]) for i in (3, 4)))
    assert taken.frames.written == [
        (tags[1], False), (tags[2], False), (tags[0], True), (tags[4], True)
    ]  # fmt: skip
    await taken.connection.close()
    assert await left_in(queue, 0) == []


async def test_a_requeued_delivery_leaves_before_any_ack_that_could_cover_it(
    taken: Taken, queue: AbstractQueue
) -> None:
    acks, messages, tags = taken.acks, taken.messages, taken.tags
    await asyncio.gather(
        acks.ack(messages[0]), acks.nack(messages[1]), *(acks.ack(m) for m in messages[2:])
    )
    # Still on its way back while the others settled: they went alone, past it.
    assert taken.frames.written == [(tags[0], True), (tags[2], False), (tags[3], False),
                                    (tags[4], False)]  # fmt: skip
    # Given back, not acked: the broker has `1` to deliver again.
    assert await left_in(queue, 1) == ["1"]


async def test_a_delivery_of_a_closed_channel_fails_its_ack(
    taken: Taken, queue: AbstractQueue
) -> None:
    await taken.connection.close()
    taken.acks.new_channel()
    with pytest.raises(Exception):  # noqa: B017 (aio-pika's closed-channel error)
        await taken.acks.ack(taken.messages[0])
    assert await left_in(queue, 5) == ["0", "1", "2", "3", "4"]


async def test_an_ack_asked_for_as_the_channel_is_replaced_is_still_written(
    taken: Taken, queue: AbstractQueue
) -> None:
    # The consumer reconnects while a batch commits: its ack is asked for, and in the same turn
    # of the event loop the consumer starts on a new channel, before the ack's frame is written.
    acked = asyncio.create_task(taken.acks.ack(taken.messages[0]))
    await asyncio.sleep(0)  # the ack holds its delivery and starts the task that writes it
    taken.acks.new_channel()
    await asyncio.wait_for(acked, 5)  # answered, on the channel it was asked for on
    assert taken.frames.written == [(taken.tags[0], True)]
    await taken.connection.close()
    assert await left_in(queue, 4) == ["1", "2", "3", "4"]
