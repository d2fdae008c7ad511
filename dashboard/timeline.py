"""One saga's timeline, laid out for the page (pure): a lane per service, a mark per message at
its time since the order was placed, arrows from each cause to its effects, and the order's
states along its lane.

The time axis grows with the logarithm of the gaps, never less than a mark's width: a saga of
four events in 20 ms and one of twelve over 30 s both read, and every mark says its time.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dashboard.projection import COMPENSATIONS, FORWARD, OUTCOMES, SAGA
from shared.observations import DEAD_LETTERED, DUPLICATE, RETRIED

LANES = SAGA.participants  # one lane each: the coordinator, then each step's participant
LEFT, TOP, LANE_HEIGHT, MARK_GAP = 120, 44, 92, 96


@dataclass
class Mark:
    x: float
    y: float
    kind: str  # forward, failure, compensation, retried, duplicate, dead_letter, repeat
    label: str
    time: str
    message_id: str
    title: str
    row: int  # labels alternate above and below, so neighbours never overlap


@dataclass
class Arrow:
    path: str
    kind: str


@dataclass
class Band:
    x1: float
    x2: float
    y: float
    status: str


@dataclass
class Timeline:
    width: float
    height: float
    lanes: list[tuple[str, float]]
    marks: list[Mark] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    deadline_x: float | None = None


def lay_out(saga: dict[str, Any], now: datetime) -> Timeline:
    messages = sorted(
        (m for m in saga["messages"] if m["occurred_at"] is not None),
        key=lambda m: (m["occurred_at"], m["stream_offset"]),
    )
    start: datetime = saga["started_at"]
    lane_y = {lane: TOP + LANE_HEIGHT * index + LANE_HEIGHT / 2 for index, lane in enumerate(LANES)}
    timeline = Timeline(width=0, height=TOP + LANE_HEIGHT * len(LANES) + 16,
                        lanes=list(lane_y.items()))  # fmt: skip
    x, previous = float(LEFT), start
    positions: dict[str, tuple[float, float]] = {}
    for index, message in enumerate(messages):
        gap_ms = max(0.0, (message["occurred_at"] - previous).total_seconds() * 1000)
        x += (MARK_GAP if index else 40) + 18 * math.log10(1 + gap_ms)
        previous = message["occurred_at"]
        lane = message["producer"] if message["producer"] in lane_y else "order"
        kind = _kind(message)
        elapsed_ms = (message["occurred_at"] - start).total_seconds() * 1000
        mark = Mark(
            x=round(x, 1),
            y=lane_y[lane],
            kind=kind,
            label=_label(message),
            time=_elapsed(elapsed_ms),
            message_id=message["message_id"],
            title=_title(message),
            row=index % 2,
        )
        timeline.marks.append(mark)
        if message["kind"] == "event" and not message["repeat"]:
            positions.setdefault(message["message_id"], (mark.x, mark.y))
    for mark, message in zip(timeline.marks, messages, strict=True):
        cause = positions.get(message["causation_id"] or "")
        if cause and cause != (mark.x, mark.y):
            timeline.arrows.append(Arrow(_curve(cause, (mark.x, mark.y)), mark.kind))
    timeline.width = x + 140
    timeline.bands = _order_states(timeline, messages, lane_y["order"])
    deadline, finished = saga.get("deadline_at"), saga.get("finished_at")
    if deadline is not None and deadline <= (finished or now):
        timeline.deadline_x = _x_at(timeline, messages, deadline)
    return timeline


def _kind(message: dict[str, Any]) -> str:
    if message["kind"] == "observation":
        return {RETRIED: "retried", DEAD_LETTERED: "dead_letter", DUPLICATE: "duplicate"}.get(
            message["type"], "duplicate"
        )
    if message["repeat"]:
        return "repeat"
    if message["type"] in FORWARD:
        return "forward"
    if message["type"] in COMPENSATIONS:
        return "compensation"
    return "failure"


def _label(message: dict[str, Any]) -> str:
    data = message["data"] or {}
    if message["type"] == RETRIED:
        return f"retry {data.get('attempt', '?')}"
    if message["type"] == DEAD_LETTERED:
        return f"dead letter: {data.get('reason', '?')}"
    if message["type"] == DUPLICATE:
        return "duplicate ignored"
    if message["repeat"]:
        return f"{message['type']} again"
    return str(message["type"])


def _title(message: dict[str, Any]) -> str:
    data = message["data"] or {}
    about = data.get("message_type") or ""
    detail = data.get("reason") or data.get("error") or ""
    return " · ".join(
        part for part in (message["type"], about, str(detail), message["message_id"]) if part
    )


def _elapsed(ms: float) -> str:
    if ms < 1000:
        return f"+{ms:.0f} ms"
    if ms < 60_000:
        return f"+{ms / 1000:.1f} s"
    return f"+{ms / 60_000:.1f} min"


def _curve(start: tuple[float, float], end: tuple[float, float]) -> str:
    (x1, y1), (x2, y2) = start, end
    bend = max(24.0, abs(x2 - x1) / 3)
    return (
        f"M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f}, "
        f"{x2 - bend:.1f} {y2:.1f}, {x2:.1f} {y2:.1f}"
    )


def _x_at(timeline: Timeline, messages: list[dict[str, Any]], when: datetime) -> float:
    """Where a moment falls on the axis: after the last mark it follows."""
    x = float(LEFT)
    for mark, message in zip(timeline.marks, messages, strict=True):
        if message["occurred_at"] <= when:
            x = mark.x + 24
    return min(x, timeline.width - 20)


def _order_states(timeline: Timeline, messages: list[dict[str, Any]], y: float) -> list[Band]:
    """PENDING from the start, PAID once paid, then the outcome: the order's states, drawn
    along its lane from the events that move it."""
    first = timeline.marks[0].x if timeline.marks else float(LEFT)
    changes: list[tuple[float, str]] = [(first, "PENDING")]
    for mark, message in zip(timeline.marks, messages, strict=True):
        if message["kind"] != "event" or message["repeat"]:
            continue
        if message["type"] == "PaymentSucceeded" and changes[-1][1] == "PENDING":
            changes.append((mark.x, "PAID"))
        elif message["type"] in OUTCOMES:
            changes.append((mark.x, OUTCOMES[message["type"]]))
            break
    ends = [x for x, _ in changes[1:]] + [timeline.width - 20]
    return [Band(x1, x2, y, status) for (x1, status), x2 in zip(changes, ends, strict=True)]
