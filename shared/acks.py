"""A consumer's acks, sent together: one `basic.ack` frame for a run of settled deliveries.

The consumer acks each message once its effect is committed (shared/consumer.py), and the
redelivery once the message's copy is confirmed (shared/redelivery.py): one ack per message, as
ever. What goes to the broker is coalesced. An ack waits for the end of the event loop's turn,
and the acks of that turn leave together: the run of settled deliveries from the oldest one the
consumer holds goes as one `basic.ack` with `multiple`, which the broker applies to every
delivery of the channel up to its tag; a settled delivery behind one still being worked on goes
alone. A batch's units of work settle in one turn (shared/batching.py), so a batch of 128
deliveries sends one frame where it sent 128, and the broker settles them in one step.

`multiple` covers only deliveries known to be settled: every delivery is held from its arrival,
in delivery-tag order, and a nack (a requeue) is written at once, before any ack that could
cover its tag. An ack returns once its frame is written, as aio-pika's does, and raises what
writing it raised (a closed channel: the broker redelivers, the inbox drops the copy).

Measured: RabbitMQ spent 94 to 99 µs of CPU per delivery consuming a quorum queue with one ack
each, 22 to 27 µs with one ack for every 32 (docs/DESIGN.md, decision 24).
"""

import asyncio
from typing import NamedTuple

from aio_pika.abc import AbstractIncomingMessage

# A frame to write: the delivery whose tag it carries, whether it acks all up to that tag too,
# and the acks waiting for it.
_Frame = tuple[AbstractIncomingMessage, bool, list[asyncio.Future[None]]]


class _Held(NamedTuple):
    """A delivery the broker still holds, and the future of its ack: None while unsettled, then
    done once the frame is written."""

    message: AbstractIncomingMessage
    written: asyncio.Future[None] | None


class Acks:
    """The acks of one consumer, on whichever channel it consumes from now."""

    def __init__(self) -> None:
        self._channel = _Channel()

    def new_channel(self) -> None:
        """Consuming from a new channel: its delivery tags start again. The old channel keeps
        what it held: the acks already asked for on it are written there, or fail with it, and
        its deliveries acked from now on are acked the plain way, which fails with the channel."""
        self._channel = _Channel()

    def delivered(self, message: AbstractIncomingMessage) -> None:
        """Hold a delivery from its arrival: no ack with `multiple` passes it until it settles.
        Called in delivery order, before the delivery's work starts."""
        self._channel.hold(message)

    async def ack(self, message: AbstractIncomingMessage) -> None:
        """Ack the message, in a frame with the others acked in this turn of the event loop."""
        if self._channel.holds(message):
            await self._channel.ack(message)
        else:
            await message.ack()

    async def nack(self, message: AbstractIncomingMessage) -> None:
        """Requeue the message, at once: no later ack may cover it before the broker has it."""
        await message.nack(requeue=True)
        # Only once written: a nack that failed leaves its delivery unsettled, so that the
        # acks behind it still go alone.
        self._channel.release(message)


class _Channel:
    """One channel's deliveries that the broker still holds, and the task writing their acks."""

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}  # by delivery tag, oldest first
        self._sending: asyncio.Task[None] | None = None

    def hold(self, message: AbstractIncomingMessage) -> None:
        self._held[_tag(message)] = _Held(message, None)

    def holds(self, message: AbstractIncomingMessage) -> bool:
        held = self._held.get(_tag(message))
        return held is not None and held.message is message

    def release(self, message: AbstractIncomingMessage) -> None:
        """Hold the delivery no longer: it was settled another way (a nack)."""
        if self.holds(message):
            del self._held[_tag(message)]

    async def ack(self, message: AbstractIncomingMessage) -> None:
        written = asyncio.get_running_loop().create_future()
        # A caller cancelled meanwhile reads no outcome: not a leak.
        written.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._held[_tag(message)] = _Held(message, written)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send(), name="acks")
        await asyncio.shield(written)

    async def _send(self) -> None:
        frames: list[_Frame] = []
        try:
            # Until no ack waits: those asked for while a frame was written go in the next.
            while frames := self._frames():
                for message, multiple, waiting in frames:
                    try:
                        await message.ack(multiple=multiple)
                    except Exception as exc:
                        for written in waiting:
                            written.set_exception(exc)
                    else:
                        for written in waiting:
                            written.set_result(None)
        finally:  # cancelled with the event loop: nobody may wait for ever
            for _, _, waiting in frames:
                for written in waiting:
                    written.cancel()
            for held in self._held.values():
                if held.written is not None:
                    held.written.cancel()

    def _frames(self) -> list[_Frame]:
        """The frames that the acks asked for so far call for: one with `multiple` for the run
        of settled deliveries from the oldest held, then one for each settled delivery behind
        the oldest unsettled one, alone. A settled delivery stays held until a run takes it."""
        frames: list[_Frame] = []
        run: list[asyncio.Future[None]] = []
        last: AbstractIncomingMessage | None = None
        for tag, (message, written) in list(self._held.items()):
            if written is None:
                break
            del self._held[tag]  # the broker holds it no longer once this frame is written
            if not written.done():  # else acked alone before, behind an unsettled one
                run.append(written)
                last = message
        if last is not None:
            frames.append((last, True, run))
        frames += [
            (message, False, [written])
            for message, written in self._held.values()
            if written is not None and not written.done()
        ]
        return frames


def _tag(message: AbstractIncomingMessage) -> int:
    assert message.delivery_tag is not None, "a consumer's delivery has a tag"
    return message.delivery_tag
