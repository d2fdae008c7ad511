"""The outbox at scale: the relay's claim stays an index scan, pruning keeps what it must,
and the relay's gauges say how far behind it is. Against a scratch database of its own."""

from collections.abc import AsyncIterator

import psycopg
import pytest

from relay.relay import CLAIM, pending_rows
from shared.db import Database, libpq_url
from shared.housekeeping import PRUNE_INBOX, PRUNE_OUTBOX, prune
from tests.clients.database import scratch_database

PUBLISHED_ROWS = 2_000_000


@pytest.fixture(scope="module")
async def scratch() -> AsyncIterator[tuple[str, Database]]:
    async with scratch_database("payment", pool_size=2) as database:
        yield libpq_url(database.url), database


def run(url: str, statement: str, **params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params or None)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


async def test_the_claim_is_an_index_scan_among_millions_of_published_rows(
    scratch: tuple[str, Database],
) -> None:
    url, _ = scratch
    run(
        url,
        f"""
        INSERT INTO outbox (message_id, routing_key, body, created_at, published_at)
        SELECT gen_random_uuid(), 'order.created', '{{}}', now() - interval '1 day',
               now() - interval '1 day'
        FROM generate_series(1, {PUBLISHED_ROWS})
        """,
    )
    run(
        url,
        "INSERT INTO outbox (message_id, routing_key, body) "
        "SELECT gen_random_uuid(), 'order.created', '{}' FROM generate_series(1, 50)",
    )
    run(url, "ANALYZE outbox")
    assert "FOR UPDATE SKIP LOCKED" in CLAIM
    plan = "\n".join(str(row[0]) for row in run(url, f"EXPLAIN ANALYZE {CLAIM}", batch_size=200))
    assert "Index Scan using outbox_pending on outbox" in plan, plan
    assert "Seq Scan" not in plan, plan


async def test_pruning_deletes_only_old_published_rows_and_old_inbox_rows(
    scratch: tuple[str, Database],
) -> None:
    url, database = scratch
    run(url, "DELETE FROM outbox")
    run(
        url,
        """
        INSERT INTO outbox (message_id, routing_key, body, created_at, published_at) VALUES
            (gen_random_uuid(), 'old.published', '{}', now() - interval '9 days',
             now() - interval '8 days'),
            (gen_random_uuid(), 'new.published', '{}', now() - interval '1 hour',
             now() - interval '1 hour'),
            (gen_random_uuid(), 'old.pending', '{}', now() - interval '9 days', NULL)
        """,
    )
    run(
        url,
        """
        INSERT INTO inbox (message_id, message_type, received_at) VALUES
            (gen_random_uuid(), 'Old', now() - interval '40 days'),
            (gen_random_uuid(), 'New', now() - interval '1 day')
        """,
    )
    week = 7 * 86_400
    assert await prune(database, PRUNE_OUTBOX, week) == 1
    assert await prune(database, PRUNE_INBOX, 30 * 86_400) == 1
    assert run(url, "SELECT routing_key FROM outbox ORDER BY routing_key") == [
        ("new.published",),
        ("old.pending",),
    ]
    assert run(url, "SELECT message_type FROM inbox") == [("New",)]


async def test_the_relay_gauges_count_pending_rows_and_the_oldest_age(
    scratch: tuple[str, Database],
) -> None:
    url, database = scratch
    run(url, "DELETE FROM outbox")
    assert await pending_rows(database) == (0, 0.0)
    run(
        url,
        """
        INSERT INTO outbox (message_id, routing_key, body, created_at, published_at) VALUES
            (gen_random_uuid(), 'a', '{}', now() - interval '90 seconds', NULL),
            (gen_random_uuid(), 'b', '{}', now() - interval '10 seconds', NULL),
            (gen_random_uuid(), 'c', '{}', now() - interval '1 hour', now())
        """,
    )
    count, oldest = await pending_rows(database)
    assert count == 2
    assert 90 <= oldest < 100
