"""A process given several broker nodes (AMQP_URL naming a cluster's nodes, shared/broker.py)
connects to one that answers without waiting on one that refuses, and when its node dies goes
on to another: shown on two nodes of this machine's RabbitMQ and a port where nothing listens."""

import asyncio
import signal
import time
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractConnection

from scripts.stack.instances import OwnRabbitMQ, free_port, wait_for_port
from shared.broker import BrokerLink


async def test_a_link_skips_a_refusing_node_and_moves_on_when_its_node_dies(
    tmp_path: Path,
) -> None:
    nodes = [OwnRabbitMQ(tmp_path / name) for name in ("a", "b")]
    for node in nodes:
        node.spawn()
    try:
        for node in nodes:
            wait_for_port(node.port, 90, node.node)
        by_port = {node.port: node for node in nodes}
        reached: list[int] = []

        async def set_up(link: BrokerLink, connection: AbstractConnection) -> None:
            assert isinstance(connection, aio_pika.Connection)
            reached.append(connection.url.port or 0)

        ports = [free_port(), *by_port]  # the first refuses: nothing listens there
        url = "amqp://guest:guest@" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/"
        link = BrokerLink(url, "failover-test", set_up)
        running = asyncio.create_task(link.run())
        try:
            started = time.monotonic()
            await asyncio.wait_for(link.connected.wait(), 10)
            # One refusal costs no back-off: the next node is tried at once.
            assert time.monotonic() - started < 2.0
            first = reached[-1]
            assert first in by_port

            by_port[first].kill(signal.SIGKILL)
            lost = time.monotonic()
            while not (link.connected.is_set() and reached[-1] != first):
                assert time.monotonic() - lost < 15, f"still not on another node: {reached}"
                await asyncio.sleep(0.05)
            assert reached[-1] in set(by_port) - {first}
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    finally:
        for node in nodes:
            node.stop()
