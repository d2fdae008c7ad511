"""The dashboard's follower (dashboard/follower.py) on the run's audit stream and a scratch
database of its own: reconnected while its projection is held up, and given again what it had
projected meanwhile, it goes on to the stream's end. A follower that held those deliveries
unacked would have spent its credit with the stream, and the stream gives such a consumer
nothing more: so the CI chaos run found the dashboard short of the stream."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest

from dashboard.follower import Follower
from dashboard.live import Live
from scripts.chaos.proxy import FaultProxy
from scripts.stack import Stack
from shared.audit import STREAM_OFFSET_HEADER, last_chunk_offset, read_audit
from shared.broker import connect
from shared.db import Database
from shared.system import Mode
from shared.topology import EVENTS_EXCHANGE
from tests.clients.api import SagaClient
from tests.clients.database import scratch_database, waited_on
from tests.polling import eventually

pytestmark = pytest.mark.only_in(Mode.CHOREOGRAPHY)  # a stream to read: either stack's will do

PREFETCH, BATCH = 10, 5


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    async with scratch_database("dashboard") as database:
        yield database


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    proxy = FaultProxy()
    try:
        yield proxy
    finally:
        proxy.close()


async def stream_end(stack: Stack) -> int:
    """The offset after the stream's last message."""
    async with await connect(stack.config.amqp_url) as connection:
        messages = await read_audit(connection, idle_seconds=0.5)
    return int(str(messages[-1].headers[STREAM_OFFSET_HEADER])) + 1


async def until(check: object, what: str, within: float = 20) -> None:
    async def holds() -> bool:
        return bool(check())  # type: ignore[operator]

    await eventually(holds, within, what)


async def test_a_follower_reconnected_while_its_projection_waits_goes_on_to_the_end(
    saga: SagaClient, database: Database, proxy: FaultProxy
) -> None:
    stack = saga.stack
    customer, sku = saga.funded_customer(100_000), saga.stocked_sku(100)
    for order_id in [saga.place_order(customer, (sku, 1, 10))["order_id"] for _ in range(20)]:
        saga.wait_for_status(order_id, "CONFIRMED")
    end = await stream_end(stack)
    assert end >= 4 * PREFETCH
    link = proxy.add("dashboard→rabbitmq", stack.config.amqp_port)
    follower = Follower(
        database, link.via(stack.config.amqp_url), Live(), batch_size=BATCH, prefetch=PREFETCH
    )

    async with database.connect() as holder:
        # The projection's first batch waits for the position's row; the stream fills the
        # follower up to its prefetch meanwhile.
        await holder.execute("SELECT * FROM stream_position FOR UPDATE")
        following = asyncio.create_task(follower.run())
        try:
            await waited_on(database, holder)
            await until(lambda: follower.waiting >= PREFETCH - BATCH, "the prefetch to fill")
            # A new connection, slow: it starts from the position as it stands (nothing
            # projected yet), and what it delivers comes after the first connection's
            # deliveries are projected.
            link.delay(0.1)
            follower.link.reset("the test's reconnect")
            await until(lambda: not follower.link.connected.is_set(), "the old connection gone")
            await until(lambda: follower.link.connected.is_set(), "the new connection")
            await holder.connection.commit()
            await until(lambda: follower.next_offset >= PREFETCH, "the first deliveries projected")
            link.heal()
            await until(lambda: follower.next_offset >= end, f"the projection at {end}", 30)
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)


async def test_the_last_chunk_of_the_stream_is_where_a_message_published_alone_went(
    saga: SagaClient,
) -> None:
    """What an idle follower compares its position with (dashboard/follower.py): a message
    published alone is a chunk of its own, the stream's last."""
    async with await connect(saga.stack.config.amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        # A key no service consumes: it reaches the audit stream only.
        message_id = f"probe-{uuid.uuid4().hex[:8]}"
        await exchange.publish(aio_pika.Message(b"{}", message_id=message_id), "test.probe")
        messages = await read_audit(connection, idle_seconds=0.5)
        [probe] = [m for m in messages if m.message_id == message_id]
        assert await last_chunk_offset(connection) == probe.headers[STREAM_OFFSET_HEADER]
