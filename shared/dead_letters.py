"""A service's dead-letter queue, read and replayed: for the DLQ tool and the dashboard.

Reading takes every message unacked and closing the channel puts back the ones not acked, so a
look changes nothing. A replayed message keeps its message_id and goes straight to the
service's own work queue, not through the exchange, so no other service sees it again, and a
service that applied it meanwhile drops it as a duplicate.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from shared.redelivery import (
    ATTEMPT_HEADER,
    DEAD_LETTERED_AT_HEADER,
    DETAIL_HEADER,
    REASON_HEADER,
    attempts_of,
    copy_of,
)
from shared.system import Mode
from shared.topology import dead_letter_queue, work_queue

# A replay starts the message's life over: its attempts and its death are history.
DROPPED_ON_REPLAY = (REASON_HEADER, DETAIL_HEADER, ATTEMPT_HEADER, DEAD_LETTERED_AT_HEADER)


@dataclass
class Letter:
    message: AbstractIncomingMessage

    @property
    def id(self) -> str:
        return self.message.message_id or "(none)"

    @property
    def reason(self) -> str:
        headers = self.message.headers
        # Our consumer names the reason; the broker's own dead-lettering (delivery limit) says
        # it in x-first-death-reason.
        return str(headers.get(REASON_HEADER) or headers.get("x-first-death-reason") or "?")

    @property
    def detail(self) -> str:
        return str(self.message.headers.get(DETAIL_HEADER) or "")

    @property
    def attempts(self) -> int:
        return attempts_of(self.message)

    @property
    def dead_lettered_at(self) -> datetime | None:
        stamp = self.message.headers.get(DEAD_LETTERED_AT_HEADER)
        when = datetime.fromisoformat(str(stamp)) if stamp else self.message.timestamp
        return None if when is None else when.replace(tzinfo=when.tzinfo or UTC)


async def read_letters(channel: AbstractChannel, service: str, mode: Mode) -> list[Letter]:
    """Every message in the service's DLQ (of that mode's work queue), unacked: they go back
    when the channel closes."""
    queue = await channel.get_queue(dead_letter_queue(service, mode), ensure=True)
    letters = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        letters.append(Letter(message))
    return letters


async def replay(channel: AbstractChannel, service: str, letter: Letter, mode: Mode) -> None:
    """Send a letter back to its service's work queue, on a confirming channel, then drop it
    from the DLQ. Confirmed first, acked after: a crash between replays it twice, never not."""
    await channel.default_exchange.publish(
        copy_of(letter.message, without=DROPPED_ON_REPLAY),
        routing_key=work_queue(service, mode),
        mandatory=True,
    )
    await letter.message.ack()
