"""The dashboard's read model checked against its source: every message of `saga.audit`
projected exactly once, and a rebuild from the stream's first offset giving the same
projection as the live one. Chaos runs it after its own check (scripts/chaos/)."""

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import psycopg

from scripts.ops.check import Invariant
from scripts.stack import StackConfig
from scripts.stack.config import ROOT
from shared import broker
from shared.audit import read_audit

# The projection without what a replay cannot reproduce: the time of projecting.
SAGAS = "SELECT * FROM sagas ORDER BY order_id"
MESSAGES = """
    SELECT stream_offset, message_id, order_id, kind, type, producer, causation_id,
           occurred_at, repeat, data, trace_id
    FROM stream_messages ORDER BY stream_offset
"""
POSITION = "SELECT next_offset FROM stream_position"


def check_dashboard(config: StackConfig, within_seconds: float = 120) -> Invariant:
    invariant = Invariant("7. the dashboard projects every audit message once; a rebuild agrees")
    size = asyncio.run(_stream_size(config.amqp_url))
    live = _projected(config, size, within_seconds, invariant)
    if live is None:
        return invariant
    subprocess.run(
        [sys.executable, "-m", "dashboard", "rebuild"],
        env={**os.environ, "DATABASE_URL": config.admin_database_url("dashboard")},
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    rebuilt = _projected(config, size, within_seconds, invariant)
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
    config: StackConfig, size: int, within_seconds: float, invariant: Invariant
) -> tuple[list[Any], list[Any]] | None:
    """The projection once it holds the whole stream, checked to hold each message once."""
    url = config.admin_database_url("dashboard").replace("+psycopg", "")
    deadline = time.monotonic() + within_seconds
    with psycopg.connect(url) as conn:
        while (conn.execute(POSITION).fetchone() or [0])[0] < size:
            if time.monotonic() > deadline:
                invariant.fail("dashboard", f"projected short of the stream's {size} messages")
                return None
            conn.rollback()
            time.sleep(0.5)
        sagas = conn.execute(SAGAS).fetchall()
        messages = conn.execute(MESSAGES).fetchall()
    offsets = [row[0] for row in messages]
    if offsets != list(range(size)):
        invariant.fail("dashboard", f"offsets projected are not 0..{size - 1}, each once")
    return sagas, messages


async def _stream_size(amqp_url: str) -> int:
    connection = await broker.connect(amqp_url, timeout=10)
    async with connection:
        return len(await read_audit(connection))
