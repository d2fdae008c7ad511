"""The reads of the read model: the saga list, its counts, the stuck sagas, one saga whole."""

from datetime import datetime
from typing import Any
from uuid import UUID

from dashboard.projection import IN_FLIGHT, STATUSES, Saga, causal_order
from shared.db import Database

SAGAS = """
    SELECT * FROM sagas
    WHERE (%(status)s::text IS NULL OR status = %(status)s)
      AND (%(customer)s::text IS NULL OR customer_id = %(customer)s)
      AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR started_at < %(until)s)
      AND (%(q)s::text IS NULL
           OR order_id::text LIKE %(q)s || '%%'
           OR order_id IN (SELECT order_id FROM stream_messages WHERE message_id = %(q)s))
    ORDER BY started_at DESC, order_id
    LIMIT %(limit)s
"""
STATS = """
    SELECT status, count(*) AS sagas,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - started_at) AS p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY finished_at - started_at) AS p99
    FROM sagas WHERE finished_at >= now() - make_interval(secs => %(window)s)
    GROUP BY status
"""
IN_FLIGHT_COUNT = "SELECT count(*) FROM sagas WHERE status = 'IN_FLIGHT'"
# In flight past the deadline or quiet for too long, or over with a compensation not done.
STUCK = """
    SELECT * FROM sagas
    WHERE (status = 'IN_FLIGHT' OR compensation_pending)
      AND (deadline_at < now() OR updated_at < now() - make_interval(secs => %(stale)s))
    ORDER BY started_at
    LIMIT %(limit)s
"""
STUCK_COUNT = """
    SELECT count(*) FROM sagas
    WHERE (status = 'IN_FLIGHT' OR compensation_pending)
      AND (deadline_at < now() OR updated_at < now() - make_interval(secs => %(stale)s))
"""
SAGA = "SELECT * FROM sagas WHERE order_id = %(order_id)s"
MESSAGES_OF = """
    SELECT stream_offset, message_id, kind, type, producer, causation_id, occurred_at,
           repeat, data, trace_id
    FROM stream_messages WHERE order_id = %(order_id)s ORDER BY stream_offset
"""


async def sagas(
    database: Database,
    *,
    status: str | None = None,
    customer: str | None = None,
    q: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    async with database.connect(autocommit=True) as sql:
        found = await sql.all(
            SAGAS, status=status, customer=customer, q=q, since=since, until=until, limit=limit
        )
    return [_with_status(row._asdict()) for row in found]


async def stats(database: Database, window_seconds: float) -> dict[str, Any]:
    """Sagas finished in the window by status, with their p50/p99 durations; in flight now."""
    async with database.connect(autocommit=True) as sql:
        finished = {row.status: row for row in await sql.all(STATS, window=window_seconds)}
        in_flight = await sql.scalar(IN_FLIGHT_COUNT)
    counts = {status: 0 for status in STATUSES} | {s: r.sagas for s, r in finished.items()}
    counts[IN_FLIGHT] = int(in_flight or 0)
    return {
        "window_seconds": window_seconds,
        "counts": counts,
        "durations": {
            status: {"p50_ms": _ms(row.p50), "p99_ms": _ms(row.p99)}
            for status, row in finished.items()
        },
    }


async def stuck(database: Database, stale_seconds: float, limit: int = 100) -> list[dict[str, Any]]:
    async with database.connect(autocommit=True) as sql:
        found = await sql.all(STUCK, stale=stale_seconds, limit=limit)
    return [_with_status(row._asdict()) for row in found]


async def stuck_count(database: Database, stale_seconds: float) -> int:
    async with database.connect(autocommit=True) as sql:
        return int(await sql.scalar(STUCK_COUNT, stale=stale_seconds) or 0)


async def saga(database: Database, order_id: UUID) -> dict[str, Any] | None:
    """One saga and every stream message of it, events in causal order."""
    async with database.connect(autocommit=True) as sql:
        row = await sql.first(SAGA, order_id=order_id)
        if row is None:
            return None
        messages = [m._asdict() for m in await sql.all(MESSAGES_OF, order_id=order_id)]
    found = _with_status(row._asdict())
    found["event_count"] = found.pop("events")
    found["events"] = causal_order(
        [m for m in messages if m["kind"] == "event" and not m["repeat"]]
    )
    found["messages"] = messages
    return found


def _with_status(row: dict[str, Any]) -> dict[str, Any]:
    """The row, with where an unsettled saga waits (dashboard/projection.py)."""
    fields = {k: v for k, v in row.items() if k not in ("status", "compensation_pending")}
    row["waiting_on"] = Saga(**fields).waiting_on()
    return row


def _ms(interval: Any) -> float | None:
    return None if interval is None else round(interval.total_seconds() * 1000, 1)
