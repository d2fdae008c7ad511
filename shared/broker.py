"""The broker link: one connection, supervised, for a service's consumer or a relay.

aio-pika's robust connection reconnects by itself, but restoring channels and consumers has
gaps: under repeated broker kills (./saga chaos) a service was left connected and not
consuming, its queue growing. So the link does the simple, checkable thing instead: connect,
let its owner set up (declare the topology, start consuming), then wait until the connection
or any of its channels closes, drop everything and start over. While it is down, `connected`
is clear: /readyz says so, the relay leaves its rows pending, and unacked deliveries go back
to the queue, where the inbox catches whatever was applied but not acked.

AMQP_URL may name the nodes of a cluster, as libpq names several hosts
(`amqp://user:password@rabbit-1:5672,rabbit-2:5672,rabbit-3:5672/vhost`): the link then starts
at one of them, drawn at random so that a system's connections spread over the cluster, and on
every loss or refusal goes on to the next.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from yarl import URL

logger = logging.getLogger("broker")

# Reconnect quickly, then every two seconds: a broker back from a restart is found within two
# seconds, and a dead one costs one refused connection every two seconds.
FIRST_DELAY = 0.25
MAX_DELAY = 2.0
# Heartbeats every 5 s, a connection given up after 33 s without a frame (aiormq allows three
# missed intervals): RabbitMQ's 60 s default would leave a consumer behind a black hole (the
# link silent, the socket open) for three minutes. RabbitMQ's guide calls 5 to 20 s optimal.
HEARTBEAT_SECONDS = 10
# How long a lost connection's closing handshake may take before it is abandoned.
CLOSE_SECONDS = 5

SetUp = Callable[["BrokerLink", AbstractConnection], Awaitable[None]]


class BrokerLink:
    def __init__(self, url: str, name: str, set_up: SetUp) -> None:
        # An AMQP_URL that asks for its own heartbeat keeps it.
        self._nodes = [str(with_heartbeat(URL(node))) for node in node_urls(url)]
        self._next = random.randrange(len(self._nodes))
        self._name = name
        self._set_up = set_up
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()

    async def channel(self, connection: AbstractConnection, **options: Any) -> AbstractChannel:
        """A channel whose closing, like the connection's, makes the link start over."""
        channel = await connection.channel(**options)
        channel.close_callbacks.add(self._on_close)
        return channel

    def _on_close(self, *_: object) -> None:
        self._lost.set()

    def reset(self, why: str) -> None:
        """Give up on the current connection (it is alive but useless) and make a new one."""
        if self.connected.is_set():
            logger.warning("%s; reconnecting", why)
            self._lost.set()

    async def run(self) -> None:
        """Connect, set up, wait for a loss, repeat; until cancelled. Each attempt goes to the
        next node; the delay grows once every node has refused."""
        delay, refused, ever_connected = FIRST_DELAY, 0, False
        while True:
            node = self._nodes[self._next % len(self._nodes)]
            self._next += 1
            try:
                connection = await aio_pika.connect(
                    node, client_properties={"connection_name": self._name}, timeout=10
                )
            except Exception as exc:  # a supervisor never dies: refused, unknown vhost, anything
                refused += 1
                if refused % len(self._nodes):
                    logger.warning("%s; trying the next node", problem(exc))
                    continue
                logger.warning("%s; retrying in %.1f s", problem(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            self._lost.clear()
            connection.close_callbacks.add(self._on_close)
            try:
                await self._set_up(self, connection)
                self.connected.set()
                if ever_connected:
                    logger.info("connected to the broker again, at %s", address(node))
                delay, refused, ever_connected = FIRST_DELAY, 0, True
                await self._lost.wait()
                logger.warning("lost the broker at %s; reconnecting", address(node))
            except Exception as exc:  # PRECONDITION_FAILED (a queue declared differently), a
                # stream not running on this node (shared/topology.py): the next node may serve
                why = str(exc) or type(exc).__name__
                logger.warning("broker set-up at %s failed (%s); retrying in %.1f s",
                               address(node), why, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):  # bounded: a black hole never answers
                    await asyncio.wait_for(connection.close(), CLOSE_SECONDS)


def node_urls(url: str) -> list[str]:
    """One URL per node that AMQP_URL names (one, or a cluster's several, comma-separated
    between the `@` and the path)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = [host.strip() for host in hosts.split(",") if host.strip()]
    return [urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}")) for host in nodes] or [url]


def address(url: str) -> str:
    """`host:port` of a node's URL, for log lines (never its credentials)."""
    return urlsplit(url).netloc.rpartition("@")[2]


async def connect(url: str, **options: Any) -> AbstractConnection:
    """A plain connection to the first node of `url` that takes one (the tools' short-lived
    connections; a process's own is a BrokerLink)."""
    failure: Exception | None = None
    for node in node_urls(url):
        try:
            return await aio_pika.connect(node, **options)
        except Exception as exc:  # refused, timed out: the next node may answer
            failure = exc
    assert failure is not None  # node_urls names at least one node
    raise failure


def with_heartbeat(url: URL) -> URL:
    return url if "heartbeat" in url.query else url.update_query(heartbeat=HEARTBEAT_SECONDS)


def problem(exc: BaseException) -> str:
    """Say why the broker could not be reached, so a wrong password does not read as an outage."""
    if isinstance(exc, aio_pika.exceptions.ProbableAuthenticationError):
        return f"the broker refused our credentials ({exc}); check AMQP_URL"
    # A refusal comes as a Connection.Close frame inside the exception: its text says why
    # ("NOT_ALLOWED - vhost saga-x not found").
    for arg in exc.args:
        if reply := getattr(arg, "reply_text", None):
            return f"the broker refused the connection ({reply}); check AMQP_URL"
    return f"broker unreachable ({exc or type(exc).__name__})"
