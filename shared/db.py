"""The async database layer: SQLAlchemy 2 Core over psycopg 3."""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

TIMESTAMPTZ = sa.TIMESTAMP(timezone=True)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        # A connection that died with its server is noticed on checkout, not halfway through
        # a unit of work, so a database restart costs retries instead of failed requests.
        pool_pre_ping=True,
    )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
