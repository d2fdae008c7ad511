"""The dashboard's read model checked against its source: every message of `saga.audit`
projected once, at the offset the stream holds it, and a rebuild from the stream's first offset
giving the same projection as the live one. Chaos runs it after its own check (scripts/chaos/).

The offsets are the stream's, read back with each message, not 0 to n - 1: RabbitMQ leaves an
offset unused at the start of every segment of the stream (docs/DESIGN.md, decision 20), so
they increase with gaps. Each violation names the offsets and message ids at fault.
"""

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from dashboard.projection import Seen
from scripts.ops.check import Invariant
from scripts.stack import StackConfig
from scripts.stack.config import ROOT
from shared import broker
from shared.audit import STREAM_OFFSET_HEADER, read_audit

# The projection without what a replay cannot reproduce: the time of projecting.
SAGAS = "SELECT * FROM sagas ORDER BY order_id"
MESSAGES = """
    SELECT stream_offset, message_id, order_id, kind, type, producer, causation_id,
           occurred_at, repeat, data, trace_id
    FROM stream_messages ORDER BY stream_offset
"""
POSITION = "SELECT next_offset FROM stream_position"
# How many offsets or ids a violation lists; the count says how many there are.
NAMED = 10


@dataclass(frozen=True)
class Stream:
    """What `saga.audit` holds: each message's id (as the projection reads it) by its offset,
    and the offsets it delivered out of order or twice, which it never should."""

    ids: dict[int, str]
    disorder: list[int]

    @property
    def end(self) -> int:
        """The offset after the last message: where a projection of it all stands."""
        return max(self.ids, default=-1) + 1


def compare(stream: Stream, projected: list[tuple[int, str, bool]], invariant: Invariant) -> None:
    """Hold the projection's (offset, message id, repeat) rows to the stream: the same offsets,
    each with the message the stream holds there, and every message id once not a repeat."""
    invariant.checked += len(stream.ids)
    if stream.disorder:
        _fail(invariant, "the stream", "delivered out of order or twice at offset", stream.disorder)
    at = {offset: message_id for offset, message_id, _ in projected}
    missing = sorted(stream.ids.keys() - at.keys())
    _fail(invariant, "the projection", "lacks offset", missing, stream.ids)
    extra = sorted(at.keys() - stream.ids.keys())
    _fail(invariant, "the projection", "has offset not in the stream", extra, at)
    other = sorted(o for o in stream.ids.keys() & at.keys() if stream.ids[o] != at[o])
    named = {o: f"projected as {at[o]}, the stream holds {stream.ids[o]}" for o in other}
    _fail(invariant, "the projection", "holds another message at offset", other, named)
    firsts = Counter(message_id for _, message_id, repeat in projected if not repeat)
    counted = {message_id for _, message_id, _ in projected}
    twice = sorted(m for m, n in firsts.items() if n > 1)
    _fail(invariant, "the projection", "counts as new more than once message", twice)
    never = sorted(counted - firsts.keys())
    _fail(invariant, "the projection", "counts only as a repeat message", never)


def _fail(
    invariant: Invariant,
    subject: str,
    what: str,
    faults: list[Any],
    detail: Mapping[Any, str] | None = None,
) -> None:
    if not faults:
        return
    shown = [f"{fault} ({detail[fault]})" if detail else str(fault) for fault in faults[:NAMED]]
    more = f", and {len(faults) - NAMED} more" if len(faults) > NAMED else ""
    invariant.fail(subject, f"{len(faults)} x {what} {', '.join(shown)}{more}")


def check_dashboard(config: StackConfig, within_seconds: float = 120) -> Invariant:
    invariant = Invariant(
        "7. the dashboard projects every audit message once, at its offset; a rebuild agrees"
    )
    stream = asyncio.run(_stream(config.amqp_url))
    live = _projected(config, stream, within_seconds, invariant)
    if live is None:
        return invariant
    subprocess.run(
        [sys.executable, "-m", "dashboard", "rebuild"],
        env={**os.environ, "DATABASE_URL": config.admin_database_url("dashboard")},
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    rebuilt = _projected(config, stream, within_seconds, invariant)
    if rebuilt is None:
        return invariant
    for what, before_rows, after_rows in (
        ("saga", live[0], rebuilt[0]),
        ("stream message", live[1], rebuilt[1]),
    ):
        invariant.checked += len(before_rows)
        if before_rows != after_rows:
            differ = [b for b, a in zip(before_rows, after_rows, strict=False) if b != a]
            invariant.fail(
                f"{len(before_rows)} live, {len(after_rows)} rebuilt {what}s",
                f"{len(differ)} differ, first {differ[:1]}",
            )
    return invariant


def _projected(
    config: StackConfig, stream: Stream, within_seconds: float, invariant: Invariant
) -> tuple[list[Any], list[Any]] | None:
    """The projection once it holds the whole stream, checked against it."""
    url = config.admin_database_url("dashboard").replace("+psycopg", "")
    deadline = time.monotonic() + within_seconds
    with psycopg.connect(url) as conn:
        while (conn.execute(POSITION).fetchone() or [0])[0] < stream.end:
            if time.monotonic() > deadline:
                invariant.fail("the projection", f"short of the stream's end (offset {stream.end})")
                return None
            conn.rollback()
            time.sleep(0.5)
        sagas = conn.execute(SAGAS).fetchall()
        messages = conn.execute(MESSAGES).fetchall()
    compare(stream, [(row[0], row[1], row[8]) for row in messages], invariant)
    return sagas, messages


async def _stream(amqp_url: str) -> Stream:
    connection = await broker.connect(amqp_url, timeout=10)
    async with connection:
        messages = await read_audit(connection)
    ids: dict[int, str] = {}
    disorder: list[int] = []
    last = -1
    for message in messages:
        offset = message.headers.get(STREAM_OFFSET_HEADER)
        assert isinstance(offset, int), f"a stream delivery without {STREAM_OFFSET_HEADER}"
        if offset <= last:
            disorder.append(offset)
        last = max(last, offset)
        seen = Seen.read(
            offset, message.body, message.exchange or "", message.message_id, message.type,
            dict(message.headers),
        )  # fmt: skip
        ids[offset] = seen.message_id
    return Stream(ids, disorder)
