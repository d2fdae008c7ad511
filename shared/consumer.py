"""The consumer loop: decode, dedupe, apply in one transaction, ack only after the commit.

- Poison (see shared/envelope.py) is dead-lettered at once, with the reason in its headers.
- A handler that raises is retried later: the message is republished, with its attempt count,
  to a delay queue that hands it back to the work queue when its TTL expires, and only then
  acked. The consumer never sleeps on a failing message, so the messages behind it flow on.
- After the last delay, the message is dead-lettered with the reason and the attempt count.

Deliveries are handled concurrently, up to the channel's prefetch; messages of one saga
serialize on its advisory lock (shared/uow.py).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from aio_pika import DeliveryMode, Message
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from sqlalchemy.exc import DBAPIError

from shared import topology
from shared.broker import BrokerLink
from shared.db import Database
from shared.envelope import PoisonMessage, decode
from shared.faults import Faults
from shared.log import for_order
from shared.metrics import HANDLE_SECONDS, MESSAGES
from shared.uow import UnitOfWork

logger = logging.getLogger("consumer")

# A handler applies one event inside the unit of work and says, in a few words, what it did.
Handler = Callable[[UnitOfWork, Any], Awaitable[str]]

ATTEMPT_HEADER = "x-attempt"
REASON_HEADER = "x-dead-letter-reason"
DETAIL_HEADER = "x-dead-letter-detail"
ROUTING_KEY_HEADER = "x-original-routing-key"
DEAD_LETTERED_AT_HEADER = "x-dead-lettered-at"


def is_outage(exc: BaseException) -> bool:
    """A lost or refused database connection, as opposed to a failure of the handler itself.

    psycopg raises OperationalError for a dead connection (no SQLSTATE, class 08, or 57P0x:
    the server shutting down or starting) and for a serialization failure or deadlock (class
    40); only the first is an outage.
    """
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(cause, psycopg.OperationalError):
        state = cause.sqlstate
        return state is None or state.startswith(("08", "57P"))
    return isinstance(cause, OSError | TimeoutError)


class Consumer:
    def __init__(
        self,
        service: str,
        database: Database,
        handlers: Mapping[str, Handler],
        *,
        prefetch: int,
        retry_delays_ms: list[int],
        faults: Faults,
        declare_all: bool = True,
    ) -> None:
        self._service = service
        self._database = database
        self._handlers = handlers
        self._prefetch = prefetch
        self._retry_delays_ms = retry_delays_ms
        self._faults = faults
        self._declare_all = declare_all
        self._publisher: AbstractChannel | None = None

    async def start(self, link: BrokerLink, connection: AbstractConnection) -> None:
        """Declare the topology and start consuming on a fresh connection (shared/broker.py)."""
        self._publisher = await link.channel(
            connection, publisher_confirms=True, on_return_raises=True
        )
        if self._declare_all:
            await topology.declare(self._publisher, self._retry_delays_ms)
        else:
            await topology.declare_own(self._publisher, self._retry_delays_ms, self._service)
        channel = await link.channel(connection)
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.declare_queue(
            topology.work_queue(self._service),
            durable=True,
            arguments=topology.work_queue_arguments(self._service),
        )
        await queue.consume(self._on_message)
        logger.info(
            "consuming %s (%s), prefetch %d",
            queue.name,
            ", ".join(self._handlers),
            self._prefetch,
        )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aio-pika cancels its delivery tasks when the channel closes (the broker went away).
        # A unit of work cancelled halfway can leave its database connection mid-command for
        # the next user of the pool; shielded, it runs to its commit or rollback, and only the
        # ack is lost (the broker redelivers, the inbox drops the copy).
        await asyncio.shield(self._handle(message))

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._apply(message)
        except PoisonMessage as poison:
            await self._dead_letter(message, poison.reason, poison.detail)
            return
        except Exception as exc:
            await self._retry_later(message, exc)
            return
        try:
            await message.ack()
        except Exception:
            # The effect is committed; the broker redelivers and the inbox drops the copy.
            logger.warning("ack of %s lost with its channel", message.message_id)

    async def _apply(self, message: AbstractIncomingMessage) -> None:
        envelope, event = decode(message.body)
        handler = self._handlers.get(event.routing_key)
        if handler is None:
            raise PoisonMessage("unhandled_type", envelope.type)
        log = for_order(logger, event.order_id)
        started = time.perf_counter()
        async with UnitOfWork(self._database, self._service) as uow:
            if not await uow.accept(envelope):
                MESSAGES.labels(envelope.type, "duplicate").inc()
                log.info("duplicate %s %s ignored", envelope.type, str(envelope.message_id)[:8])
                return
            self._faults.maybe_fail(handler.__name__)
            what = await handler(uow, event)
            await uow.commit()
        self._faults.maybe_crash_after_commit(event.routing_key)
        HANDLE_SECONDS.labels(envelope.type).observe(time.perf_counter() - started)
        MESSAGES.labels(envelope.type, "applied").inc()
        caused = ", ".join(emitted.type for emitted in uow.emitted)
        log.info("%s for %s%s", what, envelope.type, f" -> {caused}" if caused else "")

    async def _retry_later(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if is_outage(exc):
            # The database is away, not the message at fault: wait out the shortest delay
            # without spending an attempt, however long the outage lasts.
            attempt = _int_header(message, ATTEMPT_HEADER)
            delay_ms = self._retry_delays_ms[0]
            _log(message).warning(
                "database unavailable, %s waits %.1f s: %s",
                message.type or "message",
                delay_ms / 1000,
                error,
            )
            queue = topology.retry_queue(self._service, delay_ms)
            await self._forward(message, "", queue, {ATTEMPT_HEADER: attempt}, outcome="waited")
            return
        attempt = _int_header(message, ATTEMPT_HEADER) + 1
        if attempt > len(self._retry_delays_ms):
            await self._dead_letter(message, "retries_exhausted", error, attempts=attempt)
            return
        delay_ms = self._retry_delays_ms[attempt - 1]
        _log(message).warning(
            "%s failed (attempt %d), retrying in %.1f s: %s",
            message.type or "message",
            attempt,
            delay_ms / 1000,
            error,
            exc_info=True,
        )
        queue = topology.retry_queue(self._service, delay_ms)
        await self._forward(message, "", queue, {ATTEMPT_HEADER: attempt}, outcome="retried")

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, detail: str, attempts: int = 1
    ) -> None:
        _log(message).error(
            "dead-lettered %s (%s) after %d attempt(s): %s %s",
            message.message_id,
            message.type or "unknown type",
            attempts,
            reason,
            detail,
        )
        headers = {
            REASON_HEADER: reason,
            DETAIL_HEADER: detail[:500],
            ATTEMPT_HEADER: attempts,
            DEAD_LETTERED_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
        }
        dlq = topology.dead_letter_queue(self._service)
        await self._forward(
            message, topology.DEAD_LETTER_EXCHANGE, dlq, headers, outcome="dead_lettered"
        )

    async def _forward(
        self,
        message: AbstractIncomingMessage,
        exchange_name: str,
        routing_key: str,
        headers: dict[str, Any],
        *,
        outcome: str,
    ) -> None:
        """Republish a copy with confirms, then ack the original: at least once, never lost."""
        assert self._publisher is not None
        original_key = message.headers.get(ROUTING_KEY_HEADER) or message.routing_key
        copy = Message(
            message.body,
            headers={**message.headers, ROUTING_KEY_HEADER: original_key, **headers},
            content_type=message.content_type,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            timestamp=message.timestamp,
        )
        try:
            exchange: AbstractExchange = (
                self._publisher.default_exchange
                if not exchange_name
                else await self._publisher.get_exchange(exchange_name, ensure=False)
            )
            # Bounded as a whole (aiormq's timeout covers the confirm, not a blocked socket).
            await asyncio.wait_for(
                exchange.publish(copy, routing_key=routing_key, mandatory=True), 10
            )
        except Exception:
            # The copy may not exist: leave the original to be redelivered, after a pause so
            # that a broker in trouble is not hammered.
            logger.exception(
                "could not forward %s to %s; requeueing", message.message_id, routing_key
            )
            await asyncio.sleep(1)
            await _nack_quietly(message)
            return
        MESSAGES.labels(message.type or "unknown", outcome).inc()
        await message.ack()


def _log(
    message: AbstractIncomingMessage,
) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Log lines about a message name its order when it says which (poison may not)."""
    return for_order(logger, message.correlation_id) if message.correlation_id else logger


def _int_header(message: AbstractIncomingMessage, name: str) -> int:
    value = message.headers.get(name, 0)
    return value if isinstance(value, int) else 0


async def _nack_quietly(message: AbstractIncomingMessage) -> None:
    try:
        await message.nack(requeue=True)
    except Exception:  # the channel is gone: the broker requeues it anyway
        logger.debug("nack failed", exc_info=True)
