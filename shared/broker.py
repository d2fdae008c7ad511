"""The broker link: one connection, supervised, for a service's consumer or a relay.

aio-pika's robust connection reconnects by itself, but restoring channels and consumers has
gaps: under repeated broker kills (scripts/chaos.py) a service was left connected and not
consuming, its queue growing. So the link does the simple, checkable thing instead: connect,
let its owner set up (declare the topology, start consuming), then wait until the connection
or any of its channels closes, drop everything and start over. While it is down, `connected`
is clear: /readyz says so, the relay leaves its rows pending, and unacked deliveries go back
to the queue, where the inbox catches whatever was applied but not acked.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

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

SetUp = Callable[["BrokerLink", AbstractConnection], Awaitable[None]]


class BrokerLink:
    def __init__(self, url: str, name: str, set_up: SetUp) -> None:
        # An AMQP_URL that asks for its own heartbeat keeps it.
        self._url = str(with_heartbeat(URL(url)))
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
        """Connect, set up, wait for a loss, repeat; until cancelled."""
        delay = FIRST_DELAY
        while True:
            try:
                connection = await aio_pika.connect(
                    self._url, client_properties={"connection_name": self._name}, timeout=10
                )
            except Exception as exc:  # a supervisor never dies: refused, unknown vhost, anything
                logger.warning("%s; retrying in %.1f s", problem(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            self._lost.clear()
            connection.close_callbacks.add(self._on_close)
            try:
                await self._set_up(self, connection)
                self.connected.set()
                if delay > FIRST_DELAY:
                    logger.info("connected to the broker again")
                delay = FIRST_DELAY
                await self._lost.wait()
                logger.warning("lost the broker; reconnecting")
            except Exception as exc:  # e.g. PRECONDITION_FAILED: a queue declared differently
                logger.warning("broker set-up failed (%s); retrying in %.1f s", problem(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await connection.close()


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
