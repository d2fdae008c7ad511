"""The dashboard's JSON API (SPEC.md, "Dashboard"), and the filters it shares with the pages."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, BeforeValidator, Field

from dashboard import queries
from dashboard.letters import groups
from dashboard.projection import STATUSES
from dashboard.runtime import Runtime, runtime_of
from shared.http import BODY, answers
from shared.system import SERVICE_NAMES

router = APIRouter(prefix="/api", tags=["dashboard"])

Status = Literal["IN_FLIGHT", "CONFIRMED", "REJECTED", "CANCELLED", "COMPENSATED"]
assert set(Status.__args__) == set(STATUSES)  # type: ignore[attr-defined]
# An order id (whole or its first characters, as the logs print it) or a message id.
SEARCH = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
PRINTABLE = r"^[^\x00-\x1f\x7f]{1,64}$"
DATE_AND_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


def _date_and_time(value: object) -> object:
    # pydantic would also take a number ("0.5") as seconds since 1970, and a bare date; the
    # document promises a date-time, so that is what a filter takes.
    if isinstance(value, str) and not DATE_AND_TIME.match(value):
        raise ValueError("must be a date and time, as 2026-12-01T10:00:00Z")
    return value


Instant = Annotated[datetime, BeforeValidator(_date_and_time)]


class Filters(BaseModel):
    status: Status | None = None
    q: str | None = Field(default=None, pattern=SEARCH)
    customer: str | None = Field(default=None, pattern=PRINTABLE)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=50, ge=1, le=1000)


async def filters(
    status: Annotated[Status | None, Query(description="the saga's status")] = None,
    q: Annotated[
        str | None, Query(pattern=SEARCH, description="an order id, or its start; a message id")
    ] = None,
    customer: Annotated[str | None, Query(pattern=PRINTABLE)] = None,
    since: Annotated[Instant | None, Query(description="started at or after")] = None,
    until: Annotated[Instant | None, Query(description="started before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Filters:
    return Filters(status=status, q=q, customer=customer, since=since, until=until, limit=limit)


FiltersDep = Annotated[Filters, Depends(filters)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


class SagaOut(BaseModel):
    order_id: UUID
    status: Status
    customer_id: str | None
    total_cents: int | None
    started_at: datetime
    updated_at: datetime


class SagaList(BaseModel):
    sagas: list[SagaOut]


class EventOut(BaseModel):
    message_id: str
    type: str
    producer: str | None
    causation_id: str | None
    occurred_at: datetime | None


class DeadLetterOut(BaseModel):
    message_id: str
    type: str
    queue: str
    reason: str


class SagaDetail(BaseModel):
    order_id: UUID
    status: Status
    reason: str | None
    trace_id: str | None
    waiting_on: str
    events: list[EventOut]
    dead_letters: list[DeadLetterOut]


# service/message_id of a dead letter; a service the system does not have is refused here, not
# when its queue turns out not to exist (schemathesis found that answered 500).
LETTER = rf"^({'|'.join(SERVICE_NAMES)})/[^\x00-\x1f/]{{1,200}}$"


class ReplayRequest(BaseModel):
    messages: list[Annotated[str, Field(pattern=LETTER)]] = Field(
        min_length=1, max_length=1000, description="service/message_id of each dead letter"
    )
    operator: str = Field(pattern=PRINTABLE, description="who replays them")


class ReplayOut(BaseModel):
    replayed: list[str]
    missing: list[str]


@router.get("/sagas", response_model=SagaList, responses=answers(422, 503))
async def list_sagas(runtime: RuntimeDep, chosen: FiltersDep) -> Any:
    return {"sagas": await queries.sagas(runtime.database, **chosen.model_dump())}


@router.get("/sagas/{order_id}", response_model=SagaDetail, responses=answers(404, 422, 503))
async def one_saga(order_id: UUID, runtime: RuntimeDep) -> Any:
    saga = await queries.saga(runtime.database, order_id)
    if saga is None:
        raise HTTPException(404, f"no saga {order_id} in the dashboard's projection")
    letters = await runtime.dead_letters_of(order_id)
    return saga | {
        "dead_letters": [
            {"message_id": d.message_id, "type": d.type, "queue": d.queue, "reason": d.reason}
            for d in letters
        ]
    }


@router.get("/stats", responses=answers(503))
async def statistics(runtime: RuntimeDep) -> Any:
    return await queries.stats(runtime.database, runtime.settings.stats_window_seconds) | {
        "follower": runtime.follower.state
    }


@router.get("/stuck", response_model=SagaList, responses=answers(503))
async def stuck_sagas(runtime: RuntimeDep) -> Any:
    return {"sagas": await queries.stuck(runtime.database, runtime.settings.stale_after_seconds)}


@router.get("/dead-letters", responses=answers(503))
async def dead_letters(runtime: RuntimeDep) -> Any:
    return {
        "groups": [
            group | {"letters": [_letter(letter) for letter in group["letters"]]}
            for group in groups(await runtime.letters.all())
        ]
    }


@router.post("/dead-letters/replay", response_model=ReplayOut, responses=answers(*BODY, 404, 503))
async def replay_dead_letters(body: ReplayRequest, runtime: RuntimeDep) -> Any:
    chosen = [tuple(item.split("/", 1)) for item in body.messages]
    replayed, missing = await runtime.letters.replay(chosen, body.operator)  # type: ignore[arg-type]
    runtime.live.publish(set(), dead_letters=True)
    if not replayed:
        raise HTTPException(404, "none of these messages is in its dead-letter queue any more")
    return {
        "replayed": [f"{letter.service}/{letter.message_id}" for letter in replayed],
        "missing": [f"{service}/{message_id}" for service, message_id in missing],
    }


def _letter(letter: Any) -> dict[str, Any]:
    return {
        "service": letter.service,
        "message_id": letter.message_id,
        "type": letter.type,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "order_id": letter.order_id,
        "dead_lettered_at": letter.dead_lettered_at,
    }
