"""The read model in the dashboard's database: projecting a batch of the stream, and the reads
the pages and the API make of it. Plain SQL on the write path (shared/db.py)."""

import json
from dataclasses import asdict
from typing import Any
from uuid import UUID

from dashboard.projection import Saga, Seen, apply
from shared.db import Database


class Rebuilt(Exception):
    """The projection was dropped and is being rebuilt: this follower's position is stale."""


POSITION = "SELECT next_offset, generation FROM stream_position WHERE id = 1"
# First in the projection's transaction: it locks the position's row (a rebuild waits for the
# batch, or the batch for the rebuild), never moves it back, and returns where it stood and
# the projection's generation. The position is the authority on what was projected: a batch is
# projected from it on, whatever the follower that sends it believes.
ADVANCE = """
    UPDATE stream_position p
    SET next_offset = greatest(p.next_offset, %(next_offset)s), projected_at = now()
    FROM (SELECT next_offset FROM stream_position WHERE id = 1 FOR UPDATE) AS before
    WHERE p.id = 1
    RETURNING before.next_offset AS before, p.next_offset AS after, p.generation
"""
SEEN_BEFORE = "SELECT DISTINCT message_id FROM stream_messages WHERE message_id = ANY(%(ids)s)"
SAGAS_OF = "SELECT * FROM sagas WHERE order_id = ANY(%(ids)s)"
RECORD = """
    INSERT INTO stream_messages (stream_offset, message_id, order_id, kind, type, producer,
                                 causation_id, occurred_at, repeat, data, trace_id)
    VALUES (%(offset)s, %(message_id)s, %(order_id)s, %(kind)s, %(type)s, %(producer)s,
            %(causation_id)s, %(occurred_at)s, %(repeat)s, %(data)s::jsonb, %(trace_id)s)
    ON CONFLICT (stream_offset) DO NOTHING
"""
UPSERT = """
    INSERT INTO sagas (order_id, status, outcome, reason, customer_id, total_cents, started_at,
                       updated_at, finished_at, deadline_at, steps, events, retries, repeats,
                       duplicates, dead_letters, last_type, last_producer,
                       compensation_pending, trace_id)
    VALUES (%(order_id)s, %(status)s, %(outcome)s, %(reason)s, %(customer_id)s,
            %(total_cents)s, %(started_at)s, %(updated_at)s, %(finished_at)s, %(deadline_at)s,
            %(steps)s::jsonb, %(events)s, %(retries)s, %(repeats)s, %(duplicates)s,
            %(dead_letters)s,
            %(last_type)s, %(last_producer)s, %(compensation_pending)s, %(trace_id)s)
    ON CONFLICT (order_id) DO UPDATE SET
        status = EXCLUDED.status, outcome = EXCLUDED.outcome, reason = EXCLUDED.reason,
        customer_id = EXCLUDED.customer_id, total_cents = EXCLUDED.total_cents,
        started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
        finished_at = EXCLUDED.finished_at, deadline_at = EXCLUDED.deadline_at,
        steps = EXCLUDED.steps, events = EXCLUDED.events, retries = EXCLUDED.retries,
        repeats = EXCLUDED.repeats,
        duplicates = EXCLUDED.duplicates, dead_letters = EXCLUDED.dead_letters,
        last_type = EXCLUDED.last_type, last_producer = EXCLUDED.last_producer,
        compensation_pending = EXCLUDED.compensation_pending, trace_id = EXCLUDED.trace_id
"""
DROP = "TRUNCATE sagas, stream_messages"
RESTART = "UPDATE stream_position SET next_offset = 0, generation = generation + 1 WHERE id = 1"


async def position(database: Database) -> tuple[int, int]:
    """(the next offset to project, the projection's generation)."""
    async with database.connect(autocommit=True) as sql:
        row = await sql.first(POSITION)
    return int(row.next_offset), int(row.generation)


async def project(database: Database, batch: list[Seen], generation: int) -> tuple[set[UUID], int]:
    """Project stream messages, in offset order, and move the position past the last, in one
    transaction; return the sagas that changed and the position now. What lies before the
    position was projected before and is left alone: a message is projected once, however
    often it is read. Raises Rebuilt for an older generation."""
    async with database.connect() as sql:
        position = await sql.first(ADVANCE, next_offset=batch[-1].offset + 1)
        if position.generation != generation:
            raise Rebuilt
        batch = [seen for seen in batch if seen.offset >= position.before]
        if not batch:
            return set(), position.after
        ids = list({seen.message_id for seen in batch})
        known = {row.message_id for row in await sql.all(SEEN_BEFORE, ids=ids)}
        order_ids = list({seen.order_id for seen in batch if seen.order_id})
        sagas = {row.order_id: _saga(row) for row in await sql.all(SAGAS_OF, ids=order_ids)}
        records = []
        for seen in batch:
            repeat = seen.message_id in known
            known.add(seen.message_id)
            records.append(_record(seen, repeat))
            if seen.order_id and (saga := apply(sagas.get(seen.order_id), seen, repeat)):
                sagas[seen.order_id] = saga
        await sql.execute_many(RECORD, records)
        changed = [sagas[order_id] for order_id in order_ids if order_id in sagas]
        if changed:
            await sql.execute_many(UPSERT, [_row(saga) for saga in changed])
        await sql.connection.commit()
    return {saga.order_id for saga in changed}, position.after


async def rebuild(database: Database) -> None:
    """Drop the projection and start it over from the stream's first offset; a follower that
    runs meanwhile notices at its next batch and starts over too (Rebuilt)."""
    async with database.connect() as sql:
        await sql.execute(RESTART)
        await sql.execute(DROP)
        await sql.connection.commit()


def _record(seen: Seen, repeat: bool) -> dict[str, Any]:
    return {
        "offset": seen.offset,
        "message_id": seen.message_id,
        "order_id": seen.order_id,
        "kind": seen.kind,
        "type": seen.type,
        "producer": seen.producer,
        "causation_id": seen.causation_id,
        "occurred_at": seen.occurred_at,
        "repeat": repeat,
        "data": json.dumps(seen.data),
        "trace_id": seen.trace_id,
    }


def _row(saga: Saga) -> dict[str, Any]:
    row = asdict(saga)
    row["steps"] = json.dumps(saga.steps)
    return row | {"status": saga.status, "compensation_pending": saga.compensation_pending}


def _saga(row: Any) -> Saga:
    fields = row._asdict()
    fields.pop("status")
    fields.pop("compensation_pending")
    return Saga(**fields)
