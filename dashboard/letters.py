"""The dead letters, as the dashboard shows and replays them: each service's DLQ read through
shared/dead_letters.py (the same read and the same replay as `./saga dlq`), and a log of every
replay in the dashboard's own database."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from shared.broker import connect
from shared.db import Database
from shared.dead_letters import Letter, read_letters, replay
from shared.system import SERVICE_NAMES, Mode
from shared.topology import dead_letter_queue

LOG_REPLAY = """
    INSERT INTO replays (queue, message_id, message_type, order_id, operator)
    VALUES (%(queue)s, %(message_id)s, %(message_type)s, %(order_id)s, %(operator)s)
"""
REPLAYS = """
    SELECT queue, message_id, message_type, order_id, operator, replayed_at
    FROM replays ORDER BY replayed_at DESC, id DESC LIMIT %(limit)s
"""
REPLAYS_OF = """
    SELECT message_id, count(*) AS times, max(replayed_at) AS last
    FROM replays WHERE message_id = ANY(%(ids)s) GROUP BY message_id
"""


@dataclass(frozen=True)
class DeadLetter:
    service: str
    queue: str
    message_id: str
    type: str
    reason: str
    detail: str
    attempts: int
    dead_lettered_at: datetime | None
    order_id: UUID | None
    routing_key: str
    headers: dict[str, str]
    body: str

    @classmethod
    def of(cls, service: str, letter: Letter, mode: Mode) -> "DeadLetter":
        message = letter.message
        try:
            body = json.dumps(json.loads(message.body), indent=2, ensure_ascii=False)
        except (UnicodeDecodeError, ValueError):
            body = repr(message.body[:4000])
        return cls(
            service=service,
            queue=dead_letter_queue(service, mode),
            message_id=letter.id,
            type=message.type or "?",
            reason=letter.reason,
            detail=letter.detail,
            attempts=letter.attempts,
            dead_lettered_at=letter.dead_lettered_at,
            order_id=_uuid(message.correlation_id),
            routing_key=str(message.headers.get("x-original-routing-key") or message.routing_key),
            headers={key: str(value)[:500] for key, value in sorted(message.headers.items())},
            body=body[:20_000],
        )


class DeadLetters:
    """The DLQs, on a connection of their own for each look (the page is not a hot path), to
    the first of AMQP_URL's nodes that answers."""

    def __init__(self, amqp_url: str, database: Database, mode: Mode) -> None:
        self._amqp_url = amqp_url
        self._database = database
        self._mode = mode

    async def all(self) -> list[DeadLetter]:
        connection = await connect(self._amqp_url, timeout=5)
        async with connection:
            channel = await connection.channel()
            return [
                DeadLetter.of(service, letter, self._mode)
                for service in SERVICE_NAMES
                for letter in await read_letters(channel, service, self._mode)
            ]

    async def replay(
        self, chosen: list[tuple[str, str]], operator: str
    ) -> tuple[list[DeadLetter], list[tuple[str, str]]]:
        """Replay the chosen (service, message_id) letters: each back to its service's work
        queue with its message_id, confirmed, then taken off the DLQ and logged. Returns what
        was replayed and what was no longer there."""
        replayed: list[DeadLetter] = []
        connection = await connect(self._amqp_url, timeout=5)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            for service in sorted({service for service, _ in chosen}):
                wanted = {message_id for s, message_id in chosen if s == service}
                for letter in await read_letters(channel, service, self._mode):
                    if letter.id in wanted:
                        await replay(channel, service, letter, self._mode)
                        replayed.append(DeadLetter.of(service, letter, self._mode))
        if replayed:
            async with self._database.connect() as sql, sql.connection.transaction():
                await sql.execute_many(
                    LOG_REPLAY,
                    [
                        {
                            "queue": letter.queue,
                            "message_id": letter.message_id,
                            "message_type": letter.type,
                            "order_id": letter.order_id,
                            "operator": operator,
                        }
                        for letter in replayed
                    ],
                )
        done = {(letter.service, letter.message_id) for letter in replayed}
        return replayed, [pair for pair in chosen if pair not in done]

    async def log(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self._database.connect(autocommit=True) as sql:
            return [row._asdict() for row in await sql.all(REPLAYS, limit=limit)]

    async def replayed_before(self, message_ids: list[str]) -> dict[str, dict[str, Any]]:
        """For letters in the DLQ now: how often, and when last, each was replayed before (a
        replay that failed again is back here, not resolved)."""
        async with self._database.connect(autocommit=True) as sql:
            found = await sql.all(REPLAYS_OF, ids=message_ids)
        return {row.message_id: {"times": row.times, "last": row.last} for row in found}


def groups(letters: list[DeadLetter]) -> list[dict[str, Any]]:
    """Letters grouped by queue, reason and type, biggest group first."""
    grouped: dict[tuple[str, str, str], list[DeadLetter]] = {}
    for letter in letters:
        grouped.setdefault((letter.queue, letter.reason, letter.type), []).append(letter)
    return [
        {"queue": queue, "reason": reason, "type": kind, "letters": found}
        for (queue, reason, kind), found in sorted(
            grouped.items(), key=lambda item: (-len(item[1]), item[0])
        )
    ]


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None
