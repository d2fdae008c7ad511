"""The unit of work: one local transaction per message or request.

It rolls back unless committed. Its commit writes the inbox row, the state change and the
outbox rows together, so an effect and the events it causes exist together or not at all.
"""

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from shared import inbox, outbox
from shared.db import Database, Sql
from shared.envelope import Envelope, wrap
from shared.events import Event


class UnitOfWork:
    def __init__(self, database: Database, producer: str) -> None:
        self._database = database
        self._producer = producer
        self._exit_stack = AsyncExitStack()
        self._sql: Sql | None = None
        self.cause: Envelope | None = None
        self.emitted: list[Envelope] = []
        self._after_commit: list[Callable[[], object]] = []

    @property
    def sql(self) -> Sql:
        """The transaction's connection, for the handler's own statements."""
        assert self._sql is not None, "use the unit of work as `async with`"
        return self._sql

    async def __aenter__(self) -> Self:
        # Whatever is not committed when the block ends is rolled back (`Database.connect`).
        self._sql = await self._exit_stack.enter_async_context(self._database.connect())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit_stack.aclose()

    async def accept(self, envelope: Envelope) -> bool:
        """Lock the message's saga and record it in the inbox; False for a duplicate.

        The lock serializes this saga's transactions in this database until commit. Handlers
        read, then write (has this order been cancelled? was it charged?); without it, two
        concurrent messages of one saga could each miss the other's write.
        """
        self.cause = envelope
        return await inbox.record(self.sql, envelope)

    def emit(self, event: Event) -> Envelope:
        envelope = wrap(event, self._producer, self.cause.message_id if self.cause else None)
        self.emitted.append(envelope)
        return envelope

    def after_commit(self, action: Callable[[], object]) -> None:
        """Run `action` once this transaction has committed, and never if it does not: a saga
        metric counts what happened, not what was tried and rolled back."""
        self._after_commit.append(action)

    async def commit(self) -> None:
        for envelope in self.emitted:
            await outbox.append(self.sql, envelope)
        await self.sql.connection.commit()
        for action in self._after_commit:
            action()


# A handler applies one message inside the unit of work and says, in a few words, what it did:
# the phrase its log line ends with (`charged 5000 to alice`). Each service lists its handlers
# in one table, `HANDLERS`, by routing key.
Handler = Callable[["UnitOfWork", Any], Awaitable[str]]
