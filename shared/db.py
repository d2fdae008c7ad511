"""The async database layer: SQLAlchemy 2 over psycopg 3.

SQLAlchemy owns the engine and its pool, the table definitions and the composed reads (the
order list, the history, the checker). The write path (every unit of work and the relays), and
`GET /orders/{id}` which shares its statement, run their SQL on the pooled connection's own
psycopg driver through `Sql`: a SQLAlchemy async `execute` costs 1.6 to 3.4 times the driver's
for the same statement (`./saga bench` prints both; docs/DESIGN.md, decision 15), and a saga
runs some forty statements.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, LiteralString, cast

import psycopg
import sqlalchemy as sa
from psycopg.rows import namedtuple_row
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

TIMESTAMPTZ = sa.TIMESTAMP(timezone=True)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        # A database that is down refuses at once; one that hangs must not hang us for long.
        connect_args={"connect_timeout": 5},
        # No pre-ping: it costs a round trip on every checkout. A connection that died with
        # its server fails its statement instead and is dropped from the pool (`connect`
        # below, or SQLAlchemy itself on the read side); the consumer's retry or the client's
        # retry of the 503 gets a fresh one.
    )


class Sql:
    """Plain SQL on one connection, with psycopg's `%(name)s` parameters.

    Rows come back as named tuples. Outside autocommit the first statement opens a
    transaction; the caller commits or rolls back (shared/uow.py).
    """

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection

    async def execute(self, query: LiteralString, **params: Any) -> int:
        """Run a statement; return how many rows it changed."""
        cursor = await self.connection.execute(query, params)
        return cursor.rowcount

    async def first(self, query: LiteralString, **params: Any) -> Any:
        """The first row, or None."""
        cursor = self.connection.cursor(row_factory=namedtuple_row)
        await cursor.execute(query, params)
        return await cursor.fetchone()

    async def all(self, query: LiteralString, **params: Any) -> list[Any]:
        cursor = self.connection.cursor(row_factory=namedtuple_row)
        await cursor.execute(query, params)
        return await cursor.fetchall()

    async def scalar(self, query: LiteralString, **params: Any) -> Any:
        """The first column of the first row, or None."""
        row = await (await self.connection.execute(query, params)).fetchone()
        return None if row is None else row[0]


@asynccontextmanager
async def connect(engine: AsyncEngine) -> AsyncIterator[Sql]:
    """Borrow a pooled connection for plain SQL; a connection that broke is not given back."""
    async with engine.connect() as pooled:
        raw = await pooled.get_raw_connection()
        driver = cast(psycopg.AsyncConnection[Any], raw.driver_connection)
        try:
            yield Sql(driver)
        finally:
            if driver.broken or driver.closed:
                await pooled.invalidate()


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
