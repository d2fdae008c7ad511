"""Does the broker keep, in a stream, every publish it confirmed across restarts?

    python -m scripts.chaos.stream_loss [--restarts 5] [--no-wait] [--broker local|container]

The experiment behind the relays' wait for the audit stream (shared/topology.py,
`wait_for_audit_stream`). On a RabbitMQ node of its own it binds a quorum queue and a stream to
one exchange, publishes with confirms in a loop that reconnects at once, SIGKILLs and restarts
the node between bursts, then reads the whole stream and counts the confirmed messages it lacks.
With --no-wait the publisher publishes as soon as it is connected; by default it first waits
for the stream, as a relay does.
"""

import argparse
import asyncio
import logging
import signal
import tempfile
import uuid
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractConnection

from scripts.arguments import at_least
from scripts.stack.instances import Broker, own_broker
from shared.audit import read_audit
from shared.topology import AUDIT_STREAM, audit_arguments, wait_for_audit_stream

EXCHANGE, QUEUE = "stream-loss", "stream-loss.queue"


async def declare(url: str) -> None:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, "topic", durable=True)
        queue = await channel.declare_queue(
            QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        stream = await channel.declare_queue(
            AUDIT_STREAM, durable=True, arguments=audit_arguments()
        )
        for bound in (queue, stream):
            await bound.bind(exchange, routing_key="#")


async def publish_until(url: str, stop: asyncio.Event, wait: bool, confirmed: list[str]) -> None:
    """Bursts of 20 confirmed publishes; on any failure, reconnect and go on."""
    while not stop.is_set():
        try:
            connection: AbstractConnection = await aio_pika.connect(url, timeout=2)
        except Exception:
            await asyncio.sleep(0.02)
            continue
        try:
            if wait:
                await wait_for_audit_stream(connection)
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EXCHANGE, ensure=False)
            while not stop.is_set():
                ids = [str(uuid.uuid4()) for _ in range(20)]
                publishes = (
                    exchange.publish(aio_pika.Message(b"{}", message_id=i, delivery_mode=2), "k")
                    for i in ids
                )
                results = await asyncio.wait_for(
                    asyncio.gather(*publishes, return_exceptions=True), 5
                )
                confirmed += [
                    i for i, r in zip(ids, results, strict=True) if not isinstance(r, BaseException)
                ]
                if any(isinstance(r, BaseException) for r in results):
                    break
        except Exception:  # the node went away mid-burst: reconnect
            pass
        finally:
            await asyncio.shield(_close_quietly(connection))


async def _close_quietly(connection: AbstractConnection) -> None:
    try:
        await connection.close()
    except Exception:
        return


async def experiment(rabbit: Broker, restarts: int, wait: bool) -> tuple[int, int]:
    url = f"amqp://guest:guest@127.0.0.1:{rabbit.port}/"
    await declare(url)
    confirmed: list[str] = []
    stop = asyncio.Event()
    publisher = asyncio.create_task(publish_until(url, stop, wait, confirmed))
    for restart in range(restarts):
        await asyncio.sleep(2)
        rabbit.kill(signal.SIGKILL)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(rabbit.start)
        print(f"restart {restart + 1} of {restarts}: {len(confirmed)} confirmed so far")
    await asyncio.sleep(2)
    stop.set()
    await publisher
    async with await aio_pika.connect(url) as connection:
        stored = {m.message_id for m in await read_audit(connection, idle_seconds=3)}
    return len(confirmed), sum(1 for i in confirmed if i not in stored)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.chaos.stream_loss",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--restarts", type=at_least(1), default=5)
    parser.add_argument("--no-wait", action="store_true", help="publish without waiting")
    parser.add_argument(
        "--broker", choices=["local", "container"], default="local",
        help="a node of this machine's RabbitMQ, or RabbitMQ 4 in a container",
    )  # fmt: skip
    args = parser.parse_args()
    # The client libraries report every killed connection at length; the counts are the point.
    for noisy in ("asyncio", "aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    rabbit = own_broker(args.broker, Path(tempfile.mkdtemp(prefix="saga-stream-loss-")))
    rabbit.start()
    try:
        confirmed, missing = asyncio.run(experiment(rabbit, args.restarts, not args.no_wait))
    finally:
        rabbit.stop()
    how = "publishing at once" if args.no_wait else "waiting for the stream first"
    print(f"{how}: {confirmed} confirmed, {missing} of them missing from the stream")


if __name__ == "__main__":
    main()
