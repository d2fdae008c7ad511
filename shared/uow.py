"""The unit of work: one local transaction per message or request.

It rolls back unless committed. Its commit writes the inbox row, the state change and the
outbox rows together, so an effect and the events it causes exist together or not at all. Each
outbox row keeps the trace context current at its `emit`; while exporting, the unit of work is
a span of its own (shared/tracing.py).
"""

import inspect
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self, get_type_hints
from uuid import UUID

from opentelemetry import context, trace

from shared import inbox, outbox, tracing
from shared.db import Database, Sql
from shared.envelope import Envelope, wrap
from shared.events import Message


class UnitOfWork:
    def __init__(
        self,
        database: Database,
        producer: str,
        parent: context.Context | None = None,
        *,
        within: Sql | None = None,
        recorded: tuple[UUID, bool] | None = None,
    ) -> None:
        """`parent`: the trace context to run in, if not the current one (a request's).
        `within`: a transaction that several units of work share and their owner commits
        (shared/batching.py); each leaves its outbox rows to the batch
        (`staged`) instead of committing. `recorded`: a message that batch already recorded
        in the inbox, and whether it was new (`accept`)."""
        self._database = database
        self._producer = producer
        self._parent = parent
        self._exit_stack = AsyncExitStack()
        self._sql: Sql | None = within
        self._recorded = recorded
        self.cause: Envelope | None = None
        self.emitted: list[Envelope] = []
        self._trace_contexts: list[tracing.TraceContext] = []
        self._after_commit: list[Callable[[], object]] = []
        self._span: trace.Span | None = None
        self._token: object = None

    @property
    def sql(self) -> Sql:
        """The transaction's connection, for the handler's own statements."""
        assert self._sql is not None, "use the unit of work as `async with`"
        return self._sql

    async def __aenter__(self) -> Self:
        self._span, self._token = tracing.start(
            "unit of work", {"saga.producer": self._producer}, self._parent
        )
        if self._sql is None:
            # Whatever is not committed when the block ends is rolled back (`Database.connect`).
            self._sql = await self._exit_stack.enter_async_context(self._database.connect())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            # The exception goes in: the connection's loan turns its own timeout's
            # cancellation into TimeoutError (shared/db.py).
            return await self._exit_stack.__aexit__(exc_type, exc, tb)
        finally:
            assert self._span is not None
            tracing.end(self._span, self._token, exc)

    async def accept(self, envelope: Envelope) -> bool:
        """Lock the message's saga and record it in the inbox; False for a duplicate.

        The lock serializes this saga's transactions in this database until commit. Handlers
        read, then write (has this order been cancelled? was it charged?); without it, two
        concurrent messages of one saga could each miss the other's write.
        """
        self.cause = envelope
        if self._span is not None:
            self._span.set_attributes({
                "saga.order_id": str(envelope.correlation_id),
                "messaging.message.id": str(envelope.message_id),
            })  # fmt: skip
        if self._recorded is not None and self._recorded[0] == envelope.message_id:
            return self._recorded[1]  # the batch recorded it, with its neighbours'
        return await inbox.record(self.sql, envelope)

    def emit(self, event: Message) -> Envelope:
        """Write an event, or a command, to the outbox at commit."""
        envelope = wrap(event, self._producer, self.cause.message_id if self.cause else None)
        self.emitted.append(envelope)
        self._trace_contexts.append(tracing.current())
        return envelope

    def after_commit(self, action: Callable[[], object]) -> None:
        """Run `action` once this transaction has committed, and never if it does not: a saga
        metric counts what happened, not what was tried and rolled back."""
        self._after_commit.append(action)

    async def commit(self) -> None:
        await outbox.append(self.sql, self.staged())
        await self.sql.commit()
        self.committed()

    def staged(self) -> list[outbox.Row]:
        """The outbox rows of what it emitted, which its transaction writes before committing:
        `commit`, or the batch that shares the transaction (shared/batching.py)."""
        if self._span is not None and self.emitted:
            self._span.set_attribute("saga.emitted", [e.type for e in self.emitted])
        return list(zip(self.emitted, self._trace_contexts, strict=True))

    def committed(self) -> None:
        """The transaction has committed: run what waited for it."""
        for action in self._after_commit:
            action()


# A handler applies one message inside the unit of work and says, in a few words, what it did:
# the phrase its log line ends with (`charged 5000 to alice`). Each service lists its handlers
# in one table, `HANDLERS`, by routing key (`handlers`).
Handler = Callable[["UnitOfWork", Any], Awaitable[str]]


def handlers(*functions: Handler) -> dict[str, Handler]:
    """A handler table, each filed under the routing key of the message class its second
    parameter is annotated with: no key is written by hand, so a handler is never filed under
    a message it cannot read, and a renamed event renames its key everywhere at once."""
    table: dict[str, Handler] = {}
    for function in functions:
        key = message_type(function).routing_key
        if key in table:
            raise TypeError(
                f"{function.__qualname__} and {table[key].__qualname__} both take {key}"
            )
        table[key] = function
    return table


def message_type(function: Handler) -> type[Message]:
    """The message class a handler takes: the annotation of its second parameter."""
    hints = get_type_hints(function)
    parameters = list(inspect.signature(function).parameters)
    taken = hints.get(parameters[1]) if len(parameters) == 2 else None
    if not (isinstance(taken, type) and issubclass(taken, Message) and taken is not Message):
        raise TypeError(
            f"{function.__qualname__} must take (uow, message) with the message annotated as "
            "the event or command class it handles"
        )
    return taken
