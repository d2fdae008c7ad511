"""The async database layer: SQLAlchemy 2 Core over psycopg 3."""

import sqlalchemy as sa
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
        # its server fails its statement instead; SQLAlchemy then drops the whole pool, and
        # the consumer's retry or the client's retry of the 503 gets a fresh connection.
    )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
