"""What happens to a message the consumer cannot apply now: a retry later, or the DLQ.

- A handler that raised is retried later: a copy, with its attempt count, goes to a delay queue
  that hands it back to the work queue when its TTL expires, and only then is the original
  acked. Nothing sleeps on a failing message, so the messages behind it flow on.
- A database outage is not the message's fault: the copy waits out the shortest delay without
  spending an attempt, however long the outage lasts.
- Poison, or a message out of attempts, is dead-lettered with the reason and the attempt count.
- Each retry and dead letter is also announced on `saga.observations` (shared/observations.py),
  for the audit stream's readers.

`copy_of` is the one way a message is copied for republishing: by the retries, the dead letters
and the DLQ's replay (shared/dead_letters.py). A copy keeps the body, the message_id, the
properties and every header (trace context included), so a copy is the same message to the
inbox that finally applies it.
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from shared import topology
from shared.acks import Acks
from shared.db import is_outage
from shared.log import for_order
from shared.metrics import MESSAGES
from shared.observations import DEAD_LETTERED, RETRIED, observe
from shared.system import Mode

logger = logging.getLogger("consumer")

ATTEMPT_HEADER = "x-attempt"
REASON_HEADER = "x-dead-letter-reason"
DETAIL_HEADER = "x-dead-letter-detail"
ROUTING_KEY_HEADER = "x-original-routing-key"
DEAD_LETTERED_AT_HEADER = "x-dead-lettered-at"
# How long one republish may take as a whole: aiormq's own timeout covers the confirm, not a
# socket that never takes the frame.
PUBLISH_TIMEOUT_SECONDS = 10


def copy_of(
    message: AbstractIncomingMessage,
    headers: Mapping[str, Any] | None = None,
    *,
    without: Iterable[str] = (),
) -> Message:
    """The same message, to publish again: headers `without` dropped, `headers` set, and the
    routing key it first travelled with remembered."""
    kept = {key: value for key, value in message.headers.items() if key not in set(without)}
    kept.setdefault(ROUTING_KEY_HEADER, message.routing_key)
    return Message(
        message.body,
        headers={**kept, **(headers or {})},
        content_type=message.content_type,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        timestamp=message.timestamp,
    )


def attempts_of(message: AbstractIncomingMessage) -> int:
    """How many times the message has failed so far (0 for a first delivery)."""
    value = message.headers.get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) else 0


class Redelivery:
    """A service's way of putting a message aside: on the consumer's confirming channel."""

    def __init__(
        self,
        service: str,
        retry_delays_ms: list[int],
        acks: Acks,
        mode: Mode,
    ) -> None:
        """`acks`: the consumer's, which settle every delivery it holds (shared/acks.py)."""
        self._service = service
        self._acks = acks
        self._mode = mode
        self._retry_delays_ms = retry_delays_ms
        # Set on every (re)connect (shared/consumer.py).
        self.channel: AbstractChannel | None = None

    async def retry_later(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if is_outage(exc):
            delay_ms = self._retry_delays_ms[0]
            _log(message).warning(
                "database unavailable, %s waits %.1f s: %s",
                message.type or "message",
                delay_ms / 1000,
                error,
            )
            await self._forward(
                message,
                self._delay_queue(delay_ms),
                {ATTEMPT_HEADER: attempts_of(message)},
                outcome="waited",
            )
            return
        attempt = attempts_of(message) + 1
        if attempt > len(self._retry_delays_ms):
            await self.dead_letter(message, "retries_exhausted", error, attempts=attempt)
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
        if await self._forward(
            message, self._delay_queue(delay_ms), {ATTEMPT_HEADER: attempt}, outcome="retried"
        ):
            await observe(
                self.channel, self._service, RETRIED, message,
                attempt=attempt, delay_ms=delay_ms, error=error,
            )  # fmt: skip

    async def dead_letter(
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
        queue = topology.dead_letter_queue(self._service, self._mode)
        if await self._forward(
            message, queue, headers, outcome="dead_lettered",
            exchange_name=topology.DEAD_LETTER_EXCHANGE,
        ):  # fmt: skip
            await observe(
                self.channel, self._service, DEAD_LETTERED, message,
                queue=queue, reason=reason, detail=detail[:500], attempts=attempts,
            )  # fmt: skip

    def _delay_queue(self, delay_ms: int) -> str:
        return topology.retry_queue(self._service, delay_ms, self._mode)

    async def _forward(
        self,
        message: AbstractIncomingMessage,
        routing_key: str,
        headers: dict[str, Any],
        *,
        outcome: str,
        exchange_name: str = "",
    ) -> bool:
        """Republish a copy with confirms, then ack the original: at least once, never lost.
        False if the copy could not be published (the original is redelivered instead)."""
        assert self.channel is not None, "set on connect"
        try:
            exchange: AbstractExchange = (
                await self.channel.get_exchange(exchange_name, ensure=False)
                if exchange_name
                else self.channel.default_exchange
            )
            await asyncio.wait_for(
                exchange.publish(
                    copy_of(message, headers), routing_key=routing_key, mandatory=True
                ),
                PUBLISH_TIMEOUT_SECONDS,
            )
        except Exception:
            # The copy may not exist: leave the original to be redelivered, after a pause so
            # that a broker in trouble is not hammered.
            logger.exception(
                "could not forward %s to %s; requeueing", message.message_id, routing_key
            )
            await asyncio.sleep(1)
            await self._nack_quietly(message)
            return False
        MESSAGES.labels(message.type or "unknown", outcome).inc()
        await self._acks.ack(message)
        return True

    async def _nack_quietly(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._acks.nack(message)
        except Exception:  # the channel is gone: the broker requeues it anyway
            logger.debug("nack failed", exc_info=True)


def _log(
    message: AbstractIncomingMessage,
) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Log lines about a message name its order when it says which (poison may not)."""
    return for_order(logger, message.correlation_id) if message.correlation_id else logger
