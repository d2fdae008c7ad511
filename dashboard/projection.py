"""The read model's logic, pure: what one message of the audit stream says about its saga.

A message is an event of the saga (saga.events), an observation of what a consumer saw
(saga.observations: a retry, a dead letter, a duplicate absorbed) or unreadable (poison
published by hand). A saga's state is built from what has happened, in whatever order the
stream holds it: each event only sets a fact (charged, refunded, the outcome...), and the
status is derived from the facts, so the result never depends on the order.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from shared.definition import ORDER_SAGA, Step
from shared.observations import DEAD_LETTERED, DUPLICATE, OBSERVATIONS_EXCHANGE, RETRIED
from shared.tracing import trace_id_of

IN_FLIGHT, CONFIRMED, REJECTED, CANCELLED, COMPENSATED = (
    "IN_FLIGHT",
    "CONFIRMED",
    "REJECTED",
    "CANCELLED",
    "COMPENSATED",
)
STATUSES = (IN_FLIGHT, CONFIRMED, REJECTED, CANCELLED, COMPENSATED)
SAGA = ORDER_SAGA  # what every saga of the stream is an instance of (shared/definition.py)
# The facts an event of each type establishes: a step done, failed or undone.
STEPS = {
    **{step.succeeded.__name__: step.words.done for step in SAGA.steps},
    **{step.failed.__name__: step.failed_fact for step in SAGA.steps},
    **{
        step.compensated.__name__: step.words.undone
        for step in SAGA.steps
        if step.compensated and step.words.undone
    },
}
OUTCOMES = {
    SAGA.confirmed_by.__name__: CONFIRMED,
    SAGA.rejected_by.__name__: REJECTED,
    SAGA.cancelled_by.__name__: CANCELLED,
}
# How each event (and, orchestrated, each command) reads on a timeline: the way forward, a
# failure, or a compensation.
FORWARD = {
    SAGA.started_by.__name__,
    SAGA.confirmed_by.__name__,
    *(message.__name__ for step in SAGA.steps for message in (step.action, step.succeeded)),
}
COMPENSATIONS = {
    message.__name__
    for step in SAGA.steps
    for message in (step.compensation, step.compensated)
    if message is not None
}


@dataclass(frozen=True)
class Seen:
    """One message of the stream, read however broken it is."""

    offset: int
    message_id: str
    kind: str  # event, observation or unreadable
    type: str
    order_id: UUID | None
    producer: str | None
    causation_id: str | None
    occurred_at: datetime | None
    data: dict[str, Any]
    trace_id: str | None

    @classmethod
    def read(
        cls,
        offset: int,
        body: bytes,
        exchange: str,
        message_id: str | None,
        type_: str | None,
        headers: dict[str, Any],
    ) -> "Seen":
        try:
            raw = _clean(json.loads(body))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raw = None
        message_id, type_ = _clean(message_id), _clean(type_)
        if not isinstance(raw, dict):
            return cls(offset, message_id or f"offset-{offset}", "unreadable", type_ or "?",
                       None, None, None, None, {}, None)  # fmt: skip
        data: dict[str, Any] = raw["data"] if isinstance(raw.get("data"), dict) else {}
        kind = "observation" if exchange == OBSERVATIONS_EXCHANGE else "event"
        order_id = _uuid(raw.get("correlation_id")) or _uuid(data.get("order_id"))
        return cls(
            offset=offset,
            message_id=str(raw.get("message_id") or message_id or f"offset-{offset}"),
            kind=kind if order_id else "unreadable",
            type=str(raw.get("type") or type_ or "?"),
            order_id=order_id,
            producer=_text(raw.get("producer")),
            causation_id=_text(raw.get("causation_id")),
            occurred_at=_time(raw.get("occurred_at")),
            data=data,
            trace_id=trace_id_of(headers),
        )


@dataclass
class Saga:
    order_id: UUID
    started_at: datetime
    updated_at: datetime
    customer_id: str | None = None
    total_cents: int | None = None
    deadline_at: datetime | None = None
    outcome: str | None = None
    reason: str | None = None
    finished_at: datetime | None = None
    steps: dict[str, bool] = field(default_factory=dict)
    events: int = 0
    retries: int = 0
    repeats: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    last_type: str | None = None
    last_producer: str | None = None
    trace_id: str | None = None

    @property
    def compensation_pending(self) -> bool:
        """Over without its pivot, and a step done whose compensation has not yet come."""
        if self.outcome not in (REJECTED, CANCELLED):
            return False
        return any(self._undo(step) for step in SAGA.steps)

    @property
    def status(self) -> str:
        if self.outcome is None:
            return IN_FLIGHT
        if self.outcome == CONFIRMED:
            return CONFIRMED
        undone = any(self._has(step.words.undone) for step in SAGA.steps)
        return COMPENSATED if undone and not self.compensation_pending else self.outcome

    def waiting_on(self) -> str:
        """Where a saga that has not settled waits, from what has happened so far: in flight,
        the step after the last one done (the coordinator's verdict after a failure or the
        last step); over, the first compensation not yet come."""
        coordinator = f"{SAGA.coordinator}: to"
        if self.outcome is None:
            if any(self._has(step.failed_fact) for step in SAGA.steps):
                return f"{coordinator} reject the {SAGA.name}"
            done = [index for index, step in enumerate(SAGA.steps) if self._has(step.words.done)]
            if not done:
                return _doing(SAGA.steps[0])
            after = done[-1] + 1
            if after == len(SAGA.steps):
                return f"{coordinator} confirm the {SAGA.name}"
            return _doing(SAGA.steps[after])
        if self.outcome == CONFIRMED:  # past its pivot: nothing is undone
            return "nothing"
        for step in SAGA.steps:
            if self._undo(step):
                return f"{step.participant}: to {step.words.undoing}"
        return "nothing"

    def _has(self, fact: str | None) -> bool:
        return fact is not None and self.steps.get(fact, False)

    def _undo(self, step: Step) -> bool:
        """Done, undoable, and not undone yet."""
        undoable = step.words.undone is not None
        return undoable and self._has(step.words.done) and not self._has(step.words.undone)


def _doing(step: Step) -> str:
    return f"{step.participant}: to {step.words.doing}"


def apply(saga: Saga | None, seen: Seen, repeat: bool) -> Saga | None:
    """The saga after one more message of it; a repeat (a message_id the stream already had)
    changes nothing but its count."""
    if seen.order_id is None or seen.kind == "unreadable":
        return saga
    at = seen.occurred_at
    if saga is None:
        # The first message seen of a saga is usually its OrderCreated; a test may publish a
        # later event first, and the saga starts there.
        saga = Saga(seen.order_id, started_at=at or _never(), updated_at=at or _never())
    if at is not None:
        saga.updated_at = max(saga.updated_at, at)
        saga.started_at = min(saga.started_at, at)
    if seen.trace_id and not saga.trace_id:
        saga.trace_id = seen.trace_id
    if seen.kind == "observation":
        if seen.type == RETRIED:
            saga.retries += 1
        elif seen.type == DEAD_LETTERED:
            saga.dead_letters += 1
        elif seen.type == DUPLICATE:
            saga.duplicates += 1
        return saga
    if repeat:
        saga.repeats += 1
        return saga
    saga.events += 1
    saga.last_type, saga.last_producer = seen.type, seen.producer
    data = seen.data
    if seen.type == SAGA.started_by.__name__:
        saga.customer_id = _text(data.get("customer_id"))
        total = data.get("total_cents")
        saga.total_cents = total if isinstance(total, int) else None
        saga.deadline_at = _time(data.get("deadline_at"))
        if at is not None:
            saga.started_at = at
    elif seen.type in STEPS:
        saga.steps = {**saga.steps, STEPS[seen.type]: True}
    elif seen.type in OUTCOMES and saga.outcome is None:
        saga.outcome = OUTCOMES[seen.type]
        saga.reason = _text(data.get("reason"))
        saga.finished_at = at
    return saga


def causal_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events in an order that puts every cause before its effects (ties by time, then by
    offset): a topological order of the causation links."""
    by_id = {event["message_id"]: event for event in events}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for event in events:
        cause = str(event.get("causation_id"))
        if cause in by_id and cause != event["message_id"]:
            children.setdefault(cause, []).append(event)
        else:
            roots.append(event)

    def key(event: dict[str, Any]) -> tuple[str, int]:
        return (str(event.get("occurred_at") or ""), int(event.get("stream_offset") or 0))

    ordered: list[dict[str, Any]] = []
    ready = sorted(roots, key=key)
    while ready:
        event = ready.pop(0)
        ordered.append(event)
        ready = sorted(ready + children.get(event["message_id"], []), key=key)
    return ordered


def _clean(value: Any) -> Any:
    """What PostgreSQL can store of any JSON: no NUL, no lone surrogate, in any string."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode()
    if isinstance(value, dict):
        return {_clean(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:200]


def _time(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else when.replace(tzinfo=UTC)


def _never() -> datetime:
    return datetime.fromisoformat("1970-01-01T00:00:00+00:00")
