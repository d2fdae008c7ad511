"""The relay loop: claim pending outbox rows, publish them, mark them published once confirmed.

- Wakes on the outbox trigger's NOTIFY (a hint) and polls anyway, so a lost notification costs
  at most one poll interval. After a batch of more than one row it lingers a few milliseconds
  before the next claim: under load each claim then takes more rows, and a lone event is never
  delayed.
- Claims a batch with FOR UPDATE SKIP LOCKED and holds the rows locked while it publishes: a
  second relay on the same database takes other rows, never the same ones.
- Publishes persistent, mandatory messages on a confirming channel. A returned (unroutable),
  nacked or timed-out publish is an error: its row stays pending and is tried again.
- Marks rows only after their confirms. A relay that dies between the two publishes the batch
  again after restart: at least once, and the consumers' inbox makes it exactly one effect.
- Publishes each row in the trace of the work that wrote it (its stored trace context), and the
  batch, which serves several sagas, as a span of its own linked to each (shared/tracing.py).
"""

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractConnection, AbstractExchange
from prometheus_client import start_http_server

from relay.settings import RelaySettings
from shared import topology, tracing
from shared.broker import BrokerLink
from shared.db import Database, libpq_url
from shared.faults import crash
from shared.housekeeping import PRUNE_OUTBOX, run_pruning
from shared.log import for_order
from shared.metrics import RELAY_FAILED, RELAY_LAG_SECONDS, RELAY_PENDING, RELAY_PUBLISHED
from shared.outbox import NOTIFY_CHANNEL

logger = logging.getLogger("relay")

# Oldest first; rows another relay holds are skipped, not waited for. The body comes back as
# the JSON text it will be published as, and the properties the message needs are picked out
# by PostgreSQL: the relay never parses and re-serializes what it merely forwards.
CLAIM = """
    SELECT id, routing_key, body::text AS body, body ->> 'message_id' AS message_id,
           body ->> 'correlation_id' AS order_id, body ->> 'type' AS type, created_at,
           trace_context
    FROM outbox
    WHERE published_at IS NULL
    ORDER BY id
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
"""
MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY(%(ids)s)"


class Relay:
    def __init__(self, settings: RelaySettings) -> None:
        self._settings = settings
        # Claims, one batch at a time; the gauges; pruning. A mark lost in a database crash
        # only has its row published again, which the consumers' inboxes absorb: the marks
        # need not wait for the disk.
        self.database = Database(settings.database_url, pool_size=3, wait_for_flush=False)
        self._wake = asyncio.Event()
        self._exchanges: topology.Exchanges = {}
        self._link = BrokerLink(settings.amqp_url, "relay", self._on_connect)
        self._serving_metrics = False

    async def _on_connect(self, link: BrokerLink, connection: AbstractConnection) -> None:
        channel = await link.channel(connection, publisher_confirms=True, on_return_raises=True)
        delays = self._settings.retry_delays_ms
        mode = self._settings.saga_mode
        self._exchanges = (
            await topology.declare(
                connection, channel, delays, mode, self._settings.audit_segment_bytes
            )
            if self._settings.declare_topology == "all"
            else await topology.declare_own(connection, channel, delays, None, mode)
        )
        await topology.wait_for_audit_stream(connection)
        if self._settings.metrics_port and not self._serving_metrics:
            # Only now: a relay that answers /metrics has been able to publish, so the
            # endpoint doubles as its readiness check (docker-compose.yml).
            start_http_server(self._settings.metrics_port, addr="0.0.0.0")
            self._serving_metrics = True
        logger.info("relaying outbox to %s", " and ".join(self._exchanges))

    async def run(self) -> None:
        await self.database.open()
        link = self._link
        broker = asyncio.create_task(link.run(), name="broker")
        listener = asyncio.create_task(self._listen(), name="listen")
        gauges = asyncio.create_task(self._update_gauges(), name="gauges")
        pruning = asyncio.create_task(
            run_pruning(
                self.database,
                PRUNE_OUTBOX,
                self._settings.outbox_retention_seconds,
                self._settings.prune_interval_seconds,
            ),
            name="pruning",
        )
        try:
            while True:
                # No broker, no publishing: the rows wait in the outbox.
                await link.connected.wait()
                assert self._exchanges
                self._wake.clear()
                try:
                    claimed, failed = await self.publish_batch(self._exchanges)
                except Exception as exc:
                    logger.warning("relay pass failed, retrying in 1 s: %s", exc)
                    await asyncio.sleep(1)
                    continue
                if failed:
                    await asyncio.sleep(1)  # the broker refused some: do not hammer it
                elif claimed < self._settings.batch_size:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._settings.poll_interval_seconds):
                            await self._wake.wait()
                    if claimed > 1:  # rows come faster than one at a time: let more gather
                        await asyncio.sleep(self._settings.linger_seconds)
        finally:
            for task in (broker, listener, gauges, pruning):
                task.cancel()
            await asyncio.gather(broker, listener, gauges, pruning, return_exceptions=True)
            await self.database.close()

    async def publish_batch(self, exchanges: topology.Exchanges) -> tuple[int, int]:
        """Publish one batch; return how many rows were claimed and how many failed."""
        async with self.database.connect() as sql, sql.connection.transaction():
            rows = await sql.all(CLAIM, batch_size=self._settings.batch_size)
            if not rows:
                return 0, 0
            with tracing.batch([row.trace_context for row in rows]):
                confirmed = await self._publish_all(exchanges, rows)
                if self._settings.fault_crash_after_publish:
                    crash()
                if confirmed:
                    await sql.execute(MARK_PUBLISHED, ids=confirmed)
        RELAY_PUBLISHED.inc(len(confirmed))
        return len(rows), len(rows) - len(confirmed)

    async def _publish_all(self, exchanges: topology.Exchanges, rows: list[Any]) -> list[int]:
        """Publish the rows at once; return the ids of those the broker confirmed."""
        results = await asyncio.gather(
            *(self._publish(exchanges[topology.exchange_of(row.routing_key)], row) for row in rows),
            return_exceptions=True,
        )
        if any(isinstance(result, TimeoutError) for result in results):
            # A connection that takes no frames and confirms nothing for that long is not
            # coming back by itself: drop it, the link reconnects.
            self._link.reset("publishes timed out")
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                RELAY_FAILED.inc()
                for_order(logger, row.order_id).error(
                    "publish of %s failed, row %d stays pending: %r", row.type, row.id, result
                )
        return [row.id for row, result in zip(rows, results, strict=True) if result is None]

    async def _publish(self, exchange: AbstractExchange, row: Any) -> None:
        with tracing.publishing(row.trace_context, f"publish {row.type}", {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": exchange.name,
            "messaging.rabbitmq.destination.routing_key": row.routing_key,
            "messaging.message.id": row.message_id,
            "saga.order_id": row.order_id,
        }) as headers:  # fmt: skip
            message = Message(
                row.body.encode(),
                headers=headers,
                content_type="application/json",
                delivery_mode=DeliveryMode.PERSISTENT,
                message_id=row.message_id,
                correlation_id=row.order_id,
                type=row.type,
                timestamp=row.created_at,
            )
            # The whole publish is bounded: aiormq's own timeout covers the confirm, not the
            # wait for the socket to take the frame, which a blocked connection never does.
            async with asyncio.timeout(self._settings.publish_timeout_seconds):
                await exchange.publish(message, routing_key=row.routing_key, mandatory=True)
            for_order(logger, row.order_id).info("published %s", row.type)

    async def _listen(self) -> None:
        """Set the wake event on every NOTIFY; reconnect when the database goes away."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    libpq_url(self._settings.database_url), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # rows committed while nobody listened
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error as exc:
                logger.warning("LISTEN connection lost (%s); polling until it is back", exc)
                await asyncio.sleep(1)

    async def _update_gauges(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                pending, oldest_seconds = await pending_rows(self.database)
                RELAY_PENDING.set(pending)
                RELAY_LAG_SECONDS.set(oldest_seconds)
            await asyncio.sleep(5)


PENDING = """
    SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
    FROM outbox WHERE published_at IS NULL
"""


async def pending_rows(database: Database) -> tuple[int, float]:
    """How many rows wait to be published, and the age in seconds of the oldest."""
    async with database.connect(autocommit=True) as sql:
        count, oldest_seconds = await sql.first(PENDING)
    return int(count), float(oldest_seconds)
