"""Units of work that wait together, committed together: the layer for load.

shared/consumer.py applies one message in one unit of work and acks it after the commit; a write
route (`POST /orders`, a cancel: shared/service.py, `Transact`) runs one unit of work per request
and answers after the commit. Under load several of a process's units of work wait for the
database at once, and each paid for a transaction of its own: a connection's checkout, a BEGIN,
a COMMIT and its flush to disk. Here those that wait together share one transaction: each still
runs its own work, in its own trace (its handler's statements), one after the other on one
connection. One statement first records every message of the batch in the inbox, each under its
saga's lock, and one statement last writes the outbox rows they all emitted; then they commit at
once. The consumer acks each message only after that commit, and a route answers only then, as
if it had been alone.

- Nothing waits to make a batch: a unit of work that finds none running goes at once, alone;
  those that come while a transaction runs go together in the next. A consumer runs one such
  transaction at a time, so two messages of one saga apply in the order they came, the second
  seeing the first's writes. The write routes have a `Transactions` of their own, so that a
  request never waits for a batch of messages; a request's batch and a message's that meet on
  row locks give up like two processes' (below).
- When a unit of work fails, the batch is rolled back and every unit of work of it runs again
  in a transaction of its own: the failing one then fails alone and takes its own way out
  (retried later, or dead-lettered: the consumer's; an error answer: the route's), and the
  others, which did nothing wrong, commit. A route's refusal that writes nothing (an unknown
  order, a reused Idempotency-Key) is returned by its work, not raised, so it does not cost its
  neighbours a second run. Batching never decides a message's or a request's fate: a conflict
  that only the batch made (a deadlock with another process's batch over two sagas' rows) is
  gone when each runs alone. The same when the server refuses the commit (nothing committed).
- A batch that waits on a row lock for more than 100 ms gives up the same way (see
  GIVE_UP_ON_LOCKS): a lock cycle between two processes' batches costs 100 ms, not a second.
- A database that cannot be reached fails every unit of work of the batch at once: one wait, not
  one per message. So does a commit whose answer is lost with its connection: a message is then
  delivered again and absorbed by the inbox, a request answered 503 (an Idempotency-Key makes
  its retry safe), as when alone.
- A process killed between the commit and the acks has every message of the batch redelivered,
  and the inbox absorbs each (tests/e2e/test_crash_windows.py).

Measured in docs/DESIGN.md (decision 24); `CONSUMER_BATCH_SIZE=1` turns it off.
"""

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from opentelemetry.context import Context

from shared import inbox, outbox
from shared.db import Database, Sql, is_outage
from shared.envelope import Envelope
from shared.metrics import BATCH_UNITS
from shared.uow import UnitOfWork

logger = logging.getLogger("consumer")

# A batch takes its messages' row locks in the order the messages came, not in one order for
# all: two processes' batches of one service can wait for each other, and PostgreSQL would
# only see the deadlock after its deadlock_timeout (1 s), with both batches stalled all that
# while. A batch that waits on a lock this long gives up instead, and its messages each go
# alone, where a message takes its locks in one order (inventory's skus sorted, payment's one
# account). Short waits, on a lock that its holder will soon give back, still succeed.
GIVE_UP_ON_LOCKS = "SET LOCAL lock_timeout = '100ms'"

T = TypeVar("T")
Work = Callable[[UnitOfWork], Awaitable[T]]


@dataclass
class _Waiting(Generic[T]):
    work: Work[T]
    parent: Context | None  # the trace to run in, if not the caller's current one (a request's)
    # The caller's context (its trace, its log lines' order id): the work runs in it.
    context: contextvars.Context
    message: Envelope | None  # the message the work accepts into the inbox, if any
    # Its id, and whether its batch found it new (inbox.record_all), once recorded.
    recorded: tuple[UUID, bool] | None = None
    done: asyncio.Future[tuple[T, UnitOfWork]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, result: tuple[T, UnitOfWork] | BaseException) -> None:
        if self.done.done():
            return
        if isinstance(result, BaseException):
            self.done.set_exception(result)
        else:
            self.done.set_result(result)


class Transactions:
    """A process's units of work, its consumer's and its write routes': alone, or batched with
    what waits."""

    def __init__(
        self, database: Database, service: str, batch_size: int, source: str = "messages"
    ) -> None:
        """`source`: what the units of work come from, for the batch-size metric: `messages`
        (the consumer's) or `requests` (the write routes')."""
        self._database = database
        self._service = service
        self._batch_size = batch_size
        self._batch_units = BATCH_UNITS.labels(source)
        self._waiting: list[_Waiting[Any]] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(
        self, work: Work[T], parent: Context | None = None, message: Envelope | None = None
    ) -> tuple[T, UnitOfWork]:
        """Run `work` in a unit of work and commit it, alone or with others; its result and
        its unit of work (what it emitted) once committed. Raises what the work raised, or
        what kept its transaction from committing. `message`: the one the work accepts
        (`UnitOfWork.accept`), which a batch records with its neighbours' in one statement."""
        if self._batch_size == 1:
            return await self._alone(work, parent)
        waiting = _Waiting(work, parent, contextvars.copy_context(), message)
        # A caller cancelled meanwhile (its channel closed) reads no outcome: not a leak.
        waiting.done.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._waiting.append(waiting)
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(), name=f"{self._service} batches")
        return await asyncio.shield(waiting.done)

    async def _drain(self) -> None:
        batch: list[_Waiting[Any]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._batch_size]
                del self._waiting[: len(batch)]
                self._batch_units.observe(len(batch))
                if len(batch) == 1:
                    await self._one_alone(batch[0])
                else:
                    await self._together(batch)
        finally:  # cancelled with the event loop: nobody may wait for ever
            for waiting in (*batch, *self._waiting):
                waiting.done.cancel()

    async def _together(self, batch: list[_Waiting[Any]]) -> None:
        staged: list[tuple[_Waiting[Any], Any]] = []
        rows: list[outbox.Row] = []  # the batch's outbox rows, written at once
        committed = False
        try:
            async with self._database.connect() as sql:
                await sql.execute(GIVE_UP_ON_LOCKS)
                try:
                    await self._record(sql, batch)
                    for waiting in batch:
                        done, emitted = await _in(waiting, self._stage(sql, waiting))
                        staged.append((waiting, done))
                        rows += emitted
                except Exception as exc:
                    if is_outage(exc):
                        return self._fail(batch, exc)
                    # A unit of work's verdict is its own alone: a deadlock with another
                    # process's batch, say, is not the message's failure.
                    logger.info(
                        "a batch of %d failed (%s): each alone", len(batch), type(exc).__name__
                    )
                else:
                    await outbox.append(sql, rows)
                    await sql.commit()
                    committed = True
        except Exception as exc:  # no connection, or the commit failed
            if not committed:
                if is_outage(exc):
                    return self._fail(batch, exc)
                logger.warning("a batch of %d failed to commit (%s): each alone", len(batch), exc)
        if committed:  # whatever failed after the commit, the batch never runs again
            for waiting, (result, uow) in staged:
                uow.committed()
                waiting.settle((result, uow))
            return None
        for waiting in batch:
            await self._one_alone(waiting)
        return None

    @staticmethod
    async def _record(sql: Sql, batch: list[_Waiting[Any]]) -> None:
        """Record the batch's messages in the inbox at once, each under its saga's lock."""
        accepting = [(waiting, waiting.message) for waiting in batch if waiting.message]
        if accepting:
            recorded = await inbox.record_all(sql, [message for _, message in accepting])
            for (waiting, message), new in zip(accepting, recorded, strict=True):
                waiting.recorded = (message.message_id, new)

    async def _stage(
        self, sql: Sql, waiting: _Waiting[T]
    ) -> tuple[tuple[T, UnitOfWork], list[outbox.Row]]:
        async with UnitOfWork(
            self._database, self._service, waiting.parent, within=sql, recorded=waiting.recorded
        ) as uow:
            result = await waiting.work(uow)
            rows = uow.staged()
        return (result, uow), rows

    async def _one_alone(self, waiting: _Waiting[Any]) -> None:
        try:
            waiting.settle(await _in(waiting, self._alone(waiting.work, waiting.parent)))
        except Exception as exc:
            waiting.settle(exc)

    async def _alone(self, work: Work[T], parent: Context | None) -> tuple[T, UnitOfWork]:
        async with UnitOfWork(self._database, self._service, parent) as uow:
            result = await work(uow)
            await uow.commit()
        return result, uow

    @staticmethod
    def _fail(batch: list[_Waiting[Any]], exc: Exception) -> None:
        for waiting in batch:
            waiting.settle(exc)


async def _in(waiting: _Waiting[Any], step: Coroutine[Any, Any, T]) -> T:
    """Run `step` in the waiting caller's context, as if the caller ran it."""
    return await asyncio.create_task(step, context=waiting.context)
