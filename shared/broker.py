"""Connecting to the broker, for the services and the relays alike."""

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractRobustConnection

logger = logging.getLogger("broker")


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A robust connection, retried with backoff until the broker answers.

    Once connected, aio-pika reconnects by itself and restores channels, queues, bindings and
    consumers (tests/e2e/test_outages.py kills the broker under load to prove it).
    """
    delay = 0.5
    while True:
        try:
            return await aio_pika.connect_robust(url, client_properties={"connection_name": name})
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            logger.warning("%s; retrying in %.1f s", problem(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def problem(exc: BaseException) -> str:
    """Say why the broker could not be reached, so a wrong password does not read as an outage."""
    if isinstance(exc, aio_pika.exceptions.ProbableAuthenticationError):
        return f"the broker refused our credentials ({exc}); check AMQP_URL"
    return f"broker unreachable ({exc})"
