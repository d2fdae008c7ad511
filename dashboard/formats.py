"""How the pages write times, money, ids and messages (Jinja filters)."""

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from dashboard.projection import IN_FLIGHT
from shared.observations import DEAD_LETTERED, DUPLICATE, RETRIED

NAMES = {IN_FLIGHT: "in flight"}


def status_name(status: str) -> str:
    return NAMES.get(status, status.lower())


def short(value: object) -> str:
    return str(value)[:8] if value else "—"


def cents(value: int | None) -> str:
    return "—" if value is None else f"{value / 100:,.2f}"


def clock(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone().strftime("%H:%M:%S.%f")[:-3]


def duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def took(saga: dict[str, Any]) -> str:
    end = saga["finished_at"] or datetime.now(UTC)
    ms = (end - saga["started_at"]).total_seconds() * 1000
    return duration(ms) + ("" if saga["finished_at"] else " so far")


def ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = max(0, int((datetime.now(UTC) - value).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def since_start(message: dict[str, Any], saga: dict[str, Any]) -> str:
    if message["occurred_at"] is None:
        return "—"
    return "+" + duration((message["occurred_at"] - saga["started_at"]).total_seconds() * 1000)


def deadline_after(saga: dict[str, Any]) -> str:
    return duration((saga["deadline_at"] - saga["started_at"]).total_seconds() * 1000)


def describe(message: dict[str, Any]) -> str:
    data = message["data"] or {}
    kind = message["type"]
    if kind == RETRIED:
        attempt, delay = data.get("attempt"), data.get("delay_ms")
        return f"{data.get('message_type')} failed, retry {attempt} in {delay} ms"
    if kind == DEAD_LETTERED:
        return f"{data.get('message_type')} dead-lettered: {data.get('reason')}"
    if kind == DUPLICATE:
        return f"a copy of {data.get('message_type')} absorbed by the inbox"
    if message["repeat"]:
        return f"{kind}, published again (absorbed)"
    reason = data.get("reason")
    return f"{kind} ({reason})" if reason else kind


def local_input(value: datetime | None) -> str:
    """A datetime-local input's value."""
    return "" if value is None else value.strftime("%Y-%m-%dT%H:%M:%S")


def install(environment: Environment) -> None:
    environment.filters.update(
        status_name=status_name, short=short, cents=cents, clock=clock, duration=duration,
        took=took, ago=ago, since_start=since_start, deadline_after=deadline_after,
        describe=describe, local_input=local_input,
    )  # fmt: skip
