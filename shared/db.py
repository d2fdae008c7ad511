"""The async database layer: psycopg 3 on the write path, SQLAlchemy 2 for the schema and reads.

Each process opens one `Database` on its service's database:
- `connect()` lends a connection from a psycopg pool for plain SQL through `Sql`: every unit of
  work (consumers, `POST /orders`, cancel, the reaper), the relays, housekeeping, and the point
  reads that share their statements. Measured here, a statement costs twice as much CPU
  through SQLAlchemy's async `execute` as on psycopg, and a checkout and return of a driver
  connection from SQLAlchemy's async pool five times as much as from psycopg's (`./saga bench`
  prints all four); a saga runs some forty statements and ten checkouts (docs/DESIGN.md,
  decision 15).
- `engine`, SQLAlchemy's async engine with a small pool of its own, runs the composed reads:
  the order list and its filters, the history, the query routes, the readiness ping.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, LiteralString

import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

TIMESTAMPTZ = sa.TIMESTAMP(timezone=True)

# A database that is down refuses at once; one that hangs must not hang us for long.
CONNECT_TIMEOUT_SECONDS = 5
# How long a caller waits for a pooled connection before its request is answered 503, or its
# message waits in a delay queue (shared/redelivery.py, `is_outage`). While the database is
# down, the pool's connections fail and are replaced by attempts in the background.
POOL_TIMEOUT_SECONDS = 5.0
# A connection that stops answering (a black hole: the bytes go out, nothing comes back) holds
# its caller for as long as TCP sees nothing wrong, which can be forever. So every loan of a
# connection is bounded: past this the work is cancelled (psycopg asks the server to cancel the
# statement and, when that goes unanswered too, closes the connection within ten seconds), and
# the caller sees an outage (`is_outage`): a 503, or a message that waits in a delay queue.
WORK_TIMEOUT_SECONDS = 15.0
# The server's side of the same: a session whose client went quiet in a transaction gives back
# its locks (a saga's, a claimed outbox row's) after 30 s, and no statement runs past the bound.
SERVER_TIMEOUTS = (
    f"-c idle_in_transaction_session_timeout=30s -c statement_timeout={WORK_TIMEOUT_SECONDS:.0f}s"
)


def is_outage(exc: BaseException) -> bool:
    """A lost or refused database connection, as opposed to a failure of the work itself.

    psycopg raises OperationalError for a dead connection (no SQLSTATE, class 08, or 57P0x:
    the server shutting down or starting) and for a serialization failure or deadlock (class
    40); only the first is an outage. SQLAlchemy wraps the driver's error on the read side.
    """
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(cause, psycopg.OperationalError):
        state = cause.sqlstate
        return state is None or state.startswith(("08", "57P"))
    return isinstance(cause, OSError | TimeoutError)


def libpq_url(url: str) -> str:
    """`postgresql+psycopg://...` (SQLAlchemy's form, which the settings use) as libpq's."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Sql:
    """Plain SQL on one connection, with psycopg's `%(name)s` parameters.

    Rows come back as named tuples. Outside autocommit the first statement opens a
    transaction; the caller commits (shared/uow.py), or `Database.connect` rolls it back. One
    cursor serves every statement: a new cursor per statement costs a fifth of a statement.
    """

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection
        self._cursor = connection.cursor(row_factory=namedtuple_row)

    async def execute(self, query: LiteralString, **params: Any) -> int:
        """Run a statement; return how many rows it changed."""
        await self._cursor.execute(query, params)
        return self._cursor.rowcount

    async def execute_many(self, query: LiteralString, rows: list[dict[str, Any]]) -> None:
        """Run a statement once per row of parameters, in one pipeline: one round trip."""
        await self._cursor.executemany(query, rows)

    async def first(self, query: LiteralString, **params: Any) -> Any:
        """The first row, or None."""
        await self._cursor.execute(query, params)
        return await self._cursor.fetchone()

    async def all(self, query: LiteralString, **params: Any) -> list[Any]:
        await self._cursor.execute(query, params)
        return await self._cursor.fetchall()

    async def scalar(self, query: LiteralString, **params: Any) -> Any:
        """The first column of the first row, or None."""
        row = await self.first(query, **params)
        return None if row is None else row[0]

    async def commit(self) -> None:
        """Commit the transaction. One that a statement's error broke is refused, not committed:
        PostgreSQL answers its COMMIT with a rollback and no error, so a caller that caught the
        statement's error would take the rollback for a commit."""
        if self.connection.info.transaction_status is TransactionStatus.INERROR:
            raise psycopg.errors.InFailedSqlTransaction(
                "the transaction failed earlier and was not committed"
            )
        await self.connection.commit()


class Database:
    """A process's connections to its service's database: a psycopg pool for plain SQL and an
    SQLAlchemy engine for the composed reads. Open it inside the event loop, close it there."""

    def __init__(self, url: str, pool_size: int = 16, *, wait_for_flush: bool = True) -> None:
        """`wait_for_flush=False` lets the pool's commits return before their WAL reaches the
        disk (`synchronous_commit = off`): only for writes that a database crash may lose
        without harm, the relay's marks (relay/relay.py)."""
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=2,
            max_overflow=3,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": SERVER_TIMEOUTS},
            # No pre-ping: it costs a round trip on every checkout. A connection that died
            # with its server fails its statement instead, and SQLAlchemy drops the pool.
        )
        self.pool = AsyncConnectionPool(
            libpq_url(url),
            # Connections are made as they are needed, up to pool_size, and closed after ten
            # idle minutes: a quiet process holds two.
            min_size=min(2, pool_size),
            max_size=pool_size,
            open=False,
            timeout=POOL_TIMEOUT_SECONDS,
            # A slot whose reconnection keeps failing is given up after this long and made
            # anew on demand, so a long outage does not leave the pool's backoff at minutes.
            reconnect_timeout=10,
            kwargs={
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "options": SERVER_TIMEOUTS
                + ("" if wait_for_flush else " -c synchronous_commit=off"),
            },
            name=make_url(url).database,
        )
        self._checking: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start filling the pool; a database that is down is retried in the background."""
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
        await self.pool.close()
        await self.engine.dispose()

    @asynccontextmanager
    async def connect(self, *, autocommit: bool = False) -> AsyncIterator[Sql]:
        """Lend a pooled connection for plain SQL. A transaction left open is rolled back on
        the way back to the pool; a connection that broke is replaced by the pool.

        `autocommit` suits a single read: one round trip, no BEGIN and no ROLLBACK.
        """
        connection = await self.pool.getconn()
        try:
            await connection.set_autocommit(autocommit)  # the connection is idle: no round trip
            async with asyncio.timeout(WORK_TIMEOUT_SECONDS):
                yield Sql(connection)
        finally:
            try:
                status = connection.info.transaction_status
                if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                    # Broken, or silent behind a black hole: the pool discards it.
                    with suppress(psycopg.Error, TimeoutError):
                        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                            await connection.rollback()
            finally:
                broken = connection.broken
                await self.pool.putconn(connection)
                if broken:
                    self._check_pool()

    def _check_pool(self) -> None:
        """One broken connection is a sign of more (a restarted server, a reset network):
        test the idle ones now, instead of failing a request or a message on each of them."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self.pool.check(), name="pool check")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection of the engine for a composed read, bounded like a loan of the pool."""
        async with self.engine.connect() as connection, asyncio.timeout(WORK_TIMEOUT_SECONDS):
            yield connection

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
