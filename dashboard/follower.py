"""The follower: reads `saga.audit` from the position the projection last committed, projects
what it reads in batches, and tells the open pages what changed.

The position is committed with the projection it covers (dashboard/store.py), so a crash
anywhere replays from the last commit: nothing skipped, nothing doubled. Stream deliveries are
acked after their batch commits; they are credit for the next ones, not the position. A
rebuild (`python -m dashboard rebuild`) bumps the projection's generation; the follower sees it
at its next batch and starts over from the first offset.
"""

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from prometheus_client import Gauge, Histogram

from dashboard import store
from dashboard.live import Live
from dashboard.projection import Seen
from shared.audit import STREAM_OFFSET_HEADER
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
# With nothing to project for this long, the follower looks whether a rebuild started.
IDLE_CHECK_SECONDS = 2.0


class Follower:
    def __init__(self, database: Database, amqp_url: str, live: Live, batch_size: int) -> None:
        self._database = database
        self._live = live
        self._batch_size = batch_size
        self._received: asyncio.Queue[Seen] = asyncio.Queue()
        self._pending: dict[int, AbstractIncomingMessage] = {}
        self.next_offset = 0
        self.generation = 0
        self.lag_seconds = 0.0
        self.link = BrokerLink(amqp_url, "dashboard", self._consume)

    async def _consume(self, link: BrokerLink, connection: AbstractConnection) -> None:
        """On every (re)connect: consume the stream from the committed position."""
        # Right after a broker restart RabbitMQ 3.10 takes a stream consumer before the stream
        # runs and then delivers nothing (the relays wait for the same reason).
        await wait_for_audit_stream(connection)
        self.next_offset, self.generation = await store.position(self._database)
        self._pending.clear()
        channel = await link.channel(connection)
        await channel.set_qos(prefetch_count=PREFETCH)
        stream = await channel.declare_queue(AUDIT_STREAM, passive=True)
        await stream.consume(self._on_message, arguments={"x-stream-offset": self.next_offset})
        logger.info("following %s from offset %d", AUDIT_STREAM, self.next_offset)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        offset = message.headers.get(STREAM_OFFSET_HEADER)
        if not isinstance(offset, int):
            await message.ack()
            return
        self._pending[offset] = message
        await self._received.put(
            Seen.read(
                offset,
                message.body,
                message.exchange or "",
                message.message_id,
                message.type,
                dict(message.headers),
            )
        )

    async def run(self) -> None:
        broker = asyncio.create_task(self.link.run(), name="broker")
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_CHECK_SECONDS):
                        batch = await self._next_batch()
                except TimeoutError:  # quiet: has the projection been rebuilt meanwhile?
                    await self._notice_rebuild()
                    continue
                if batch:
                    await self._project(batch)
        finally:
            broker.cancel()
            await asyncio.gather(broker, return_exceptions=True)

    async def _next_batch(self) -> list[Seen]:
        """The messages waiting, from the position on, in offset order: what a reconnect
        delivers again is already behind the position and is dropped."""
        batch = [await self._received.get()]
        while len(batch) < self._batch_size and not self._received.empty():
            batch.append(self._received.get_nowait())
        batch = sorted({seen.offset: seen for seen in batch}.values(), key=lambda s: s.offset)
        return [seen for seen in batch if seen.offset >= self.next_offset]

    async def _project(self, batch: list[Seen]) -> None:
        while True:
            try:
                changed = await store.project(self._database, batch, self.generation)
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
        self.next_offset = batch[-1].offset + 1
        PROJECTED.set(self.next_offset)
        newest = max((s.occurred_at for s in batch if s.occurred_at), default=None)
        if newest is not None:
            self.lag_seconds = max(0.0, (datetime.now(UTC) - newest).total_seconds())
            LAG.set(self.lag_seconds)
            LAG_SECONDS.observe(self.lag_seconds)
        for seen in batch:
            if (message := self._pending.pop(seen.offset, None)) is not None:
                # Its channel may be gone; the position says where to go on from.
                with contextlib.suppress(Exception):
                    await message.ack()
        self._live.publish(changed, dead_letters=any(seen.type == DEAD_LETTERED for seen in batch))

    async def _notice_rebuild(self) -> None:
        try:
            _, generation = await store.position(self._database)
        except Exception:  # the database is away: the next batch will say so
            return
        if generation != self.generation:
            self._start_over()

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
