"""The consumer loop: decode, dedupe, apply in one transaction, ack only after the commit.

One message, one unit of work, one ack. What cannot be applied now is put aside by
shared/redelivery.py: poison to the DLQ at once, a failing handler to a delay queue, then to the
DLQ once its attempts are spent.

Deliveries are handled concurrently, up to the channel's prefetch; messages of one saga
serialize on its advisory lock, which the inbox's statement takes (shared/inbox.py). Under load
the units of work of the deliveries that wait together commit in one transaction, each still
acked after it (shared/batching.py), and their acks go to the broker in one frame
(shared/acks.py).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from opentelemetry.trace import Span, StatusCode

from shared import topology, tracing
from shared.acks import Acks
from shared.batching import Transactions
from shared.broker import BrokerLink
from shared.envelope import PoisonMessage, decode
from shared.faults import Faults
from shared.log import for_order
from shared.metrics import DLQ_MESSAGES, HANDLE_SECONDS, MESSAGES
from shared.observations import DUPLICATE, observe
from shared.redelivery import Redelivery, attempts_of
from shared.system import Mode
from shared.uow import Handler, UnitOfWork

logger = logging.getLogger("consumer")

# How often the depth of the service's DLQ is read for `saga_dlq_messages`.
DLQ_GAUGE_INTERVAL_SECONDS = 5.0


class Consumer:
    def __init__(
        self,
        service: str,
        transactions: Transactions,
        handlers: Mapping[str, Handler],
        *,
        prefetch: int,
        retry_delays_ms: list[int],
        faults: Faults,
        declare_all: bool = True,
        mode: Mode,
        audit_segment_bytes: int = topology.AUDIT_SEGMENT_BYTES,
    ) -> None:
        self._service = service
        self._handlers = handlers
        self._prefetch = prefetch
        self._retry_delays_ms = retry_delays_ms
        self._faults = faults
        self._declare_all = declare_all
        self._mode = mode
        self._audit_segment_bytes = audit_segment_bytes
        self._queue = topology.work_queue(service, mode)
        self._acks = Acks()
        self._redelivery = Redelivery(service, retry_delays_ms, self._acks, mode)
        self._transactions = transactions
        self._inspector: AbstractChannel | None = None

    async def start(self, link: BrokerLink, connection: AbstractConnection) -> None:
        """Declare the topology and start consuming on a fresh connection (shared/broker.py)."""
        publisher = await link.channel(connection, publisher_confirms=True, on_return_raises=True)
        delays, mode = self._retry_delays_ms, self._mode
        if self._declare_all:
            await topology.declare(connection, publisher, delays, mode, self._audit_segment_bytes)
        else:
            await topology.declare_own(connection, publisher, delays, self._service, mode)
        self._redelivery.channel = publisher
        channel = await link.channel(connection)
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.declare_queue(
            self._queue,
            durable=True,
            arguments=topology.work_queue_arguments(self._service, mode),
        )
        self._acks.new_channel()
        await queue.consume(self._on_message)
        # Not the link's: a failed passive declare closes its channel, and that must not look
        # like a lost broker.
        self._inspector = await connection.channel()
        logger.info(
            "consuming %s (%s), prefetch %d",
            queue.name,
            ", ".join(self._handlers),
            self._prefetch,
        )

    async def watch_dead_letters(self) -> None:
        """Every few seconds, the depth of the service's DLQ as `saga_dlq_messages{queue}`, read
        by a passive declare; until cancelled. While the broker is away the last value stays."""
        name = topology.dead_letter_queue(self._service, self._mode)
        while True:
            channel = self._inspector
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    queue = await channel.declare_queue(name, passive=True)
                    DLQ_MESSAGES.labels(name).set(queue.declaration_result.message_count or 0)
            await asyncio.sleep(DLQ_GAUGE_INTERVAL_SECONDS)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._acks.delivered(message)
        # aio-pika cancels its delivery tasks when the channel closes (the broker went away).
        # A unit of work cancelled halfway can leave its database connection mid-command for
        # the next user of the pool; shielded, it runs to its commit or rollback, and only the
        # ack is lost (the broker redelivers, the inbox drops the copy).
        await asyncio.shield(self._handle(message))

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        # In the trace of the message's saga, as a child of the relay's publish of it: every
        # log line of this delivery, and the unit of work, carry its trace id.
        with tracing.consuming(message.headers, f"process {message.type}", {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": self._queue,
            "messaging.rabbitmq.destination.routing_key": message.routing_key or "",
            "messaging.message.id": message.message_id or "",
            "saga.order_id": message.correlation_id or "",
            "saga.attempt": attempts_of(message),
        }) as span:  # fmt: skip
            await self._settle(message, span)

    async def _settle(self, message: AbstractIncomingMessage, span: Span) -> None:
        try:
            applied = await self._apply(message)
        except PoisonMessage as poison:
            span.set_status(StatusCode.ERROR, f"dead-lettered: {poison.reason}")
            await self._redelivery.dead_letter(message, poison.reason, poison.detail)
            return
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, f"failed: {type(exc).__name__}")
            await self._redelivery.retry_later(message, exc)
            return
        try:
            await self._acks.ack(message)  # in one frame with the acks of its batch
        except Exception:
            # The effect is committed; the broker redelivers and the inbox drops the copy.
            logger.warning("ack of %s lost with its channel", message.message_id)
        if not applied:
            await observe(self._redelivery.channel, self._service, DUPLICATE, message)

    async def _apply(self, message: AbstractIncomingMessage) -> bool:
        """Apply the message in one unit of work; False if the inbox had it (a duplicate)."""
        envelope, event = decode(message.body)
        handler = self._handlers.get(event.routing_key)
        if handler is None:
            raise PoisonMessage("unhandled_type", envelope.type)
        log = for_order(logger, event.order_id)
        started = time.perf_counter()

        async def work(uow: UnitOfWork) -> str | None:
            if not await uow.accept(envelope):
                return None
            self._faults.maybe_fail(handler.__name__)
            return await handler(uow, event)

        # Committed when it returns: alone, or with the deliveries that waited beside it.
        what, uow = await self._transactions.run(work, message=envelope)
        if what is None:
            MESSAGES.labels(envelope.type, "duplicate").inc()
            log.info("duplicate %s %s ignored", envelope.type, str(envelope.message_id)[:8])
            return False
        self._faults.maybe_crash_after_commit(event.routing_key)
        HANDLE_SECONDS.labels(envelope.type).observe(time.perf_counter() - started)
        MESSAGES.labels(envelope.type, "applied").inc()
        caused = ", ".join(emitted.type for emitted in uow.emitted)
        log.info("%s for %s%s", what, envelope.type, f" -> {caused}" if caused else "")
        return True
