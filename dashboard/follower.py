"""The follower: reads `saga.audit` from the position the projection last committed, projects
what it reads in batches, and tells the open pages what changed.

The position is committed with the projection it covers (dashboard/store.py), so a crash
anywhere replays from the last commit: nothing skipped, nothing doubled. Stream deliveries are
acked as they are taken into a batch: an ack is credit for the next one, not the position. A
rebuild (`python -m dashboard rebuild`) bumps the projection's generation; the follower sees it
at its next batch and starts over from the first offset.
"""

import asyncio
import contextlib
import functools
import logging
import time
from datetime import UTC, datetime

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from prometheus_client import Gauge, Histogram

from dashboard import store
from dashboard.live import Live
from dashboard.projection import Seen
from shared.audit import STREAM_OFFSET_HEADER, last_chunk_offset
from shared.broker import BrokerLink
from shared.db import Database, is_outage
from shared.observations import DEAD_LETTERED
from shared.topology import AUDIT_STREAM, wait_for_audit_stream

logger = logging.getLogger("follower")

LAG = Gauge(
    "saga_dashboard_projection_lag_seconds",
    "From the newest projected message's occurrence to its projection.",
)
LAG_SECONDS = Histogram(
    "saga_dashboard_projection_lag_seconds_observed",
    "From each batch's newest message's occurrence to the batch's commit.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROJECTED = Gauge("saga_dashboard_projected_offset", "The next stream offset to project.")
PREFETCH = 2000
# With nothing to project for this long, the follower looks whether a rebuild started, and
# whether the stream holds what its consumer was not given.
IDLE_CHECK_SECONDS = 2.0


def gaps(offsets: list[int], position: int) -> list[tuple[int, int]]:
    """The runs of offsets, [start, end), that increasing `offsets` skip from `position` on."""
    found = []
    for offset in offsets:
        if offset > position:
            found.append((position, offset))
        position = offset + 1
    return found


class Follower:
    def __init__(
        self,
        database: Database,
        amqp_url: str,
        live: Live,
        batch_size: int,
        prefetch: int = PREFETCH,
    ) -> None:
        self._database = database
        self._live = live
        self._batch_size = batch_size
        self._prefetch = prefetch
        # What the stream delivered and the follower has not taken yet, with the connection it
        # came on. Each holds one of the consumer's credits (its prefetch) until it is acked.
        self._received: asyncio.Queue[tuple[int, AbstractIncomingMessage, Seen]] = asyncio.Queue()
        self._connection = 0
        self._stream_connection: AbstractConnection | None = None
        # The position at which an idle check found the stream further on (None: it did not).
        self._unfed_at: int | None = None
        # The offsets last found skipped, [start, end), read again by a new consumer.
        self._gap: tuple[int, int] | None = None
        self.next_offset = 0
        self.generation = 0
        self.lag_seconds = 0.0
        self.link = BrokerLink(amqp_url, "dashboard", self._consume)

    async def _consume(self, link: BrokerLink, connection: AbstractConnection) -> None:
        """On every (re)connect: consume the stream from the position."""
        # Right after a broker restart RabbitMQ 3.10 takes a stream consumer before the stream
        # runs and then delivers nothing (the relays wait for the same reason).
        await wait_for_audit_stream(connection)
        committed, generation = await store.position(self._database)
        # A batch in flight meanwhile may have moved the position on: never go back within
        # one generation (the store would refuse to project anything twice anyway).
        if generation == self.generation:
            committed = max(committed, self.next_offset)
        self.next_offset, self.generation = committed, generation
        self._connection += 1
        self._stream_connection = connection
        channel = await link.channel(connection)
        await channel.set_qos(prefetch_count=self._prefetch)
        stream = await channel.declare_queue(AUDIT_STREAM, passive=True)
        await stream.consume(
            functools.partial(self._on_message, self._connection),
            arguments={"x-stream-offset": self.next_offset},
        )
        logger.info("following %s from offset %d", AUDIT_STREAM, self.next_offset)

    async def _on_message(self, connection: int, message: AbstractIncomingMessage) -> None:
        offset = message.headers.get(STREAM_OFFSET_HEADER)
        if not isinstance(offset, int):
            await message.ack()
            return
        seen = Seen.read(
            offset,
            message.body,
            message.exchange or "",
            message.message_id,
            message.type,
            dict(message.headers),
        )
        await self._received.put((connection, message, seen))

    @property
    def waiting(self) -> int:
        """Deliveries received and not yet taken into a batch."""
        return self._received.qsize()

    async def run(self) -> None:
        broker = asyncio.create_task(self.link.run(), name="broker")
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_CHECK_SECONDS):
                        batch = await self._next_batch()
                except TimeoutError:  # quiet: rebuilt meanwhile? or not being fed?
                    await self._notice_rebuild()
                    await self._notice_unfed()
                    continue
                if batch:
                    await self._project(batch)
        finally:
            broker.cancel()
            await asyncio.gather(broker, return_exceptions=True)

    async def _next_batch(self) -> list[Seen]:
        """The messages waiting, from the position on, in offset order.

        Each delivery is acked as it is taken, whatever becomes of it: an ack is credit for
        the next delivery, not a position (the committed position is where a reconnect
        resumes), and a stream consumer whose credits are all held is given nothing more, for
        ever. What an earlier connection delivered is dropped (the consumer of this one
        starts at the position and delivers it again), and so is what lies behind the
        position (a batch in flight as this consumer started committed after)."""
        waiting = [await self._received.get()]
        while len(waiting) < self._batch_size and not self._received.empty():
            waiting.append(self._received.get_nowait())
        for _, message, _ in waiting:
            with contextlib.suppress(Exception):  # its channel may be gone
                await message.ack()
        current = {
            seen.offset: seen
            for connection, _, seen in waiting
            if connection == self._connection and seen.offset >= self.next_offset
        }
        return self._up_to_a_gap(sorted(current.values(), key=lambda seen: seen.offset))

    def _up_to_a_gap(self, batch: list[Seen]) -> list[Seen]:
        """The batch up to the first offsets it skips that were not seen skipped before.

        A stream's offsets have gaps of its own (an offset at the start of each segment goes
        to a chunk no consumer is given), and a consumer may be skipped past messages: the soak
        found three messages never delivered to the dashboard's consumer on a node whose
        replica of the stream had been restarted under it (docs/DESIGN.md, decision 20). The
        two look alike, so a gap is read again, by a consumer of a new connection (to the next
        node) from the gap's start: the same gap again is the stream's own; a message in it is
        projected."""
        for gap in gaps([seen.offset for seen in batch], self.next_offset):
            start, end = gap
            if gap == self._gap:
                logger.info("offsets %d to %d are unused in %s: read twice", start, end - 1,
                            AUDIT_STREAM)  # fmt: skip
                continue
            self._gap = gap
            self._reconnect(f"offsets {start} to {end - 1} not delivered; reading them again")
            return [seen for seen in batch if seen.offset < end]
        return batch

    def _reconnect(self, why: str) -> None:
        """Give the connection up: what its consumer delivers from now on is dropped, and the
        consumer of the next one starts at the position."""
        self._connection += 1
        self.link.reset(why)

    async def _project(self, batch: list[Seen]) -> None:
        while True:
            try:
                changed, position = await store.project(self._database, batch, self.generation)
                break
            except store.Rebuilt:
                self._start_over()
                return
            except Exception as exc:
                if is_outage(exc):
                    logger.warning("database unavailable, projection waits: %s", exc)
                    await asyncio.sleep(1)
                else:  # a bug: said loudly, tried again, and the page shows the lag grow
                    logger.exception("projecting offsets %d.. failed", batch[0].offset)
                    await asyncio.sleep(5)
        self.next_offset = max(self.next_offset, position)
        PROJECTED.set(self.next_offset)
        newest = max((s.occurred_at for s in batch if s.occurred_at), default=None)
        if newest is not None:
            self.lag_seconds = max(0.0, (datetime.now(UTC) - newest).total_seconds())
            LAG.set(self.lag_seconds)
            LAG_SECONDS.observe(self.lag_seconds)
        self._live.publish(changed, dead_letters=any(seen.type == DEAD_LETTERED for seen in batch))

    async def _notice_rebuild(self) -> None:
        try:
            _, generation = await store.position(self._database)
        except Exception:  # the database is away: the next batch will say so
            return
        if generation != self.generation:
            self._start_over()

    async def _notice_unfed(self) -> None:
        """Idle, and the stream holds messages past the position: the consumer is not being
        fed. So it was after a chaos run's node faults: the dashboard's consumer, on a node
        whose replica of the stream was restarted under it twice, was given nothing more for
        four minutes on a live connection (docs/DESIGN.md, decision 20). Seen at two idle
        checks in a row (the first may be a delivery on its way), the connection is given up
        and the next one, to the next node of a cluster, starts at the position."""
        connection = self._stream_connection
        if connection is None or not self.link.connected.is_set():
            return
        try:
            # Where the stream has data, its last chunk comes at once; empty, nothing comes.
            tail = await last_chunk_offset(connection, within=0.5)
        except Exception:  # the connection failing: the link's own supervision sees to it
            return
        if tail is None or tail < self.next_offset:
            self._unfed_at = None
        elif self._unfed_at != self.next_offset:
            self._unfed_at = self.next_offset
        else:
            self._unfed_at = None
            self._reconnect(
                f"{AUDIT_STREAM} holds offset {tail} and more, and its consumer was given "
                f"nothing from offset {self.next_offset} for {2 * IDLE_CHECK_SECONDS:.0f} s"
            )

    def _start_over(self) -> None:
        logger.info("the projection was rebuilt; following from the start again")
        self._received = asyncio.Queue()
        self.next_offset = 0
        self.link.reset("projection rebuilt")

    @property
    def state(self) -> dict[str, object]:
        return {
            "broker": self.link.connected.is_set(),
            "next_offset": self.next_offset,
            "lag_seconds": round(self.lag_seconds, 3),
            "at": time.time(),
        }
