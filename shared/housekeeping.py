"""Pruning by age: published outbox rows (by the relay) and old inbox rows (by the service).

Both tables only grow otherwise. Deletes run in small batches so they never hold long locks
or bloat one transaction. Business history (charges, refunds, reservations, releases, order
history) is never pruned; the outbox and inbox are plumbing, and every event stays in the
`saga.audit` stream for as long as the stream keeps it.
"""

import asyncio
import logging
from typing import LiteralString

from shared.db import Database

logger = logging.getLogger("housekeeping")

BATCH = 5_000

PRUNE_OUTBOX = """
    DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox
        WHERE published_at < now() - make_interval(secs => %(retention_seconds)s)
        LIMIT %(batch)s)
"""
# An inbox row must outlive every redelivery of its message, replays from the DLQ included:
# keep it much longer than anything can stay queued.
PRUNE_INBOX = """
    DELETE FROM inbox WHERE message_id IN (
        SELECT message_id FROM inbox
        WHERE received_at < now() - make_interval(secs => %(retention_seconds)s)
        LIMIT %(batch)s)
"""


async def prune(database: Database, statement: LiteralString, retention_seconds: float) -> int:
    """Delete everything older than the retention, a batch per transaction; return the count."""
    total = 0
    while True:
        async with database.connect(autocommit=True) as sql:
            deleted = await sql.execute(statement, retention_seconds=retention_seconds, batch=BATCH)
        total += deleted
        if deleted < BATCH:
            return total


async def run_pruning(
    database: Database, statement: LiteralString, retention_seconds: float, interval_seconds: float
) -> None:
    while True:
        try:
            if deleted := await prune(database, statement, retention_seconds):
                logger.info("pruned %d rows older than %.0f s", deleted, retention_seconds)
        except Exception as exc:
            logger.warning("pruning failed, trying again later: %s", exc)
        await asyncio.sleep(interval_seconds)
