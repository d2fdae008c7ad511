"""Reading the `saga.audit` stream from its first offset: the tools' view of every saga."""

import asyncio

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from shared.topology import AUDIT_STREAM

# RabbitMQ puts each message's offset in the stream into this header when it delivers it.
STREAM_OFFSET_HEADER = "x-stream-offset"


async def read_audit(
    connection: AbstractConnection, idle_seconds: float = 1.0
) -> list[AbstractIncomingMessage]:
    """Every message in the stream, read to its end (nothing more for `idle_seconds`).

    Always to the end: leaving early would reject the prefetched rest, which a stream refuses
    by closing the connection.
    """
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    stream = await channel.declare_queue(AUDIT_STREAM, passive=True)
    messages: list[AbstractIncomingMessage] = []
    async with stream.iterator(arguments={"x-stream-offset": "first"}) as iterator:
        while True:
            try:
                message = await asyncio.wait_for(iterator.__anext__(), idle_seconds)
            except (TimeoutError, StopAsyncIteration):
                return messages
            await message.ack()
            messages.append(message)


async def last_chunk_offset(connection: AbstractConnection, within: float = 2.0) -> int | None:
    """The offset of the first message of the stream's last chunk (a batch of messages written
    together), as the node of this connection holds it; None if it gives nothing within
    `within` seconds (the stream is empty).

    What a consumer can compare its position with: one that has been given nothing while this
    is at or past its position is not being fed (dashboard/follower.py)."""
    channel = await connection.channel()
    try:
        await channel.set_qos(prefetch_count=1)
        stream = await channel.declare_queue(AUDIT_STREAM, passive=True)
        found: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def first(message: AbstractIncomingMessage) -> None:
            await message.ack()  # a stream takes an ack as credit; never leave one held
            offset = message.headers.get(STREAM_OFFSET_HEADER)
            if isinstance(offset, int) and not found.done():
                found.set_result(offset)

        tag = await stream.consume(first, arguments={"x-stream-offset": "last"})
        try:
            return await asyncio.wait_for(asyncio.shield(found), within)
        except TimeoutError:
            return None
        finally:
            await stream.cancel(tag)
    finally:
        if not channel.is_closed:
            await channel.close()
