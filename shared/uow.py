"""The unit of work: one local transaction per message or request.

It rolls back unless committed. Its commit writes the inbox row, the state change and the
outbox rows together, so an effect and the events it causes exist together or not at all.
"""

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import inbox
from shared.envelope import Envelope, wrap
from shared.events import Event
from shared.outbox import outbox, outbox_row

INSERT_OUTBOX = outbox.insert()


class UnitOfWork:
    def __init__(self, engine: AsyncEngine, producer: str) -> None:
        self._engine = engine
        self._producer = producer
        self._conn: AsyncConnection | None = None
        self._committed = False
        self.cause: Envelope | None = None
        self.emitted: list[Envelope] = []
        self._rows: list[dict[str, object]] = []

    @property
    def conn(self) -> AsyncConnection:
        assert self._conn is not None, "use the unit of work as `async with`"
        return self._conn

    async def __aenter__(self) -> Self:
        self._conn = await self._engine.connect()
        await self._conn.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self.conn.rollback()
        finally:
            await self.conn.close()

    async def accept(self, envelope: Envelope) -> bool:
        """Lock the message's saga and record it in the inbox; False for a duplicate.

        The lock serializes this saga's transactions in this database until commit. Handlers
        read, then write (has this order been cancelled? was it charged?); without it, two
        concurrent messages of one saga could each miss the other's write.
        """
        self.cause = envelope
        return await inbox.record(self.conn, envelope)

    def emit(self, event: Event) -> Envelope:
        envelope = wrap(event, self._producer, self.cause.message_id if self.cause else None)
        self.emitted.append(envelope)
        self._rows.append(outbox_row(envelope, event.routing_key))
        return envelope

    async def commit(self) -> None:
        if self._rows:
            await self.conn.execute(INSERT_OUTBOX, self._rows)
        await self.conn.commit()
        self._committed = True
