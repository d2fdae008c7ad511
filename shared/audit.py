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
