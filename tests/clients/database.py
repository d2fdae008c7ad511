"""A service's database reached directly as its administrator, and scratch databases of a
test's own."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, LiteralString

import psycopg

from scripts.stack import Stack
from shared.db import Database, Sql
from shared.migrations import upgrade
from tests.polling import eventually


def sql(stack: Stack, service: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Reach one service's database directly, as its administrator: to read what the APIs do
    not show (the outbox), or to corrupt it on purpose. Returns the rows, if any."""
    url = stack.config.admin_database_url(service).replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.asynccontextmanager
async def scratch_database(service: str, pool_size: int = 4) -> AsyncIterator[Database]:
    """A database of the test's own on the machine's PostgreSQL, migrated as `service`'s
    (`sagatest_scratch_<service>_<id>`), open for the block and dropped after it."""
    name = f"sagatest_scratch_{service}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        upgrade(service, url)
        database = Database(url, pool_size=pool_size)
        await database.open()
        try:
            yield database
        finally:
            await database.close()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def rows(database: Database, query: LiteralString, **params: object) -> list[Any]:
    """Every row a read returns, as named tuples, outside any unit of work."""
    async with database.connect(autocommit=True) as db:
        return await db.all(query, **params)


WAITING_ON = "SELECT count(*) FROM pg_stat_activity WHERE %(pid)s = ANY(pg_blocking_pids(pid))"


async def waited_on(database: Database, holder: Sql, within: float = 15.0) -> None:
    """Return once another session waits for a lock that `holder`'s transaction holds, as
    PostgreSQL sees it (pg_blocking_pids): proof that the lock, not the clock, held it back."""
    pid = await holder.scalar("SELECT pg_backend_pid()")

    async def someone_waits() -> bool:
        async with database.connect(autocommit=True) as sql:
            return bool(await sql.scalar(WAITING_ON, pid=pid))

    await eventually(someone_waits, within, f"a session to wait for backend {pid}'s lock")
