"""The dashboard's pages: server-rendered HTML, kept live by server-sent events.

Each page renders whole on its first load; its live parts are fragments (`/fragments/...`)
that htmx fetches again when the page's event stream (`/events`) says they changed. The
stream also sends `refresh` when it (re)connects, so a page left open through a restart of the
dashboard, the broker or the database catches up by itself.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sse_starlette.sse import EventSourceResponse

from dashboard import formats, queries
from dashboard.api import PRINTABLE, FiltersDep, RuntimeDep
from dashboard.letters import DeadLetter, groups
from dashboard.projection import STATUSES
from dashboard.runtime import Runtime
from dashboard.timeline import lay_out
from shared.system import SERVICE_NAMES

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
formats.install(TEMPLATES.env)
router = APIRouter(include_in_schema=False)
# At most one push a second per page: at saturation sagas change hundreds of times a second.
PUSH_SECONDS = 1.0
STATUS_SECONDS = 2.0


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, context)


@router.get("/", response_class=HTMLResponse)
async def saga_list(request: Request, runtime: RuntimeDep, chosen: FiltersDep) -> HTMLResponse:
    return _page(
        request, "index.html", filters=chosen, statuses=STATUSES,
        sagas=await queries.sagas(runtime.database, **chosen.model_dump()),
        stats=await queries.stats(runtime.database, runtime.settings.stats_window_seconds),
        **await _nav(runtime),
    )  # fmt: skip


@router.get("/fragments/sagas", response_class=HTMLResponse)
async def saga_rows(request: Request, runtime: RuntimeDep, chosen: FiltersDep) -> HTMLResponse:
    return _page(
        request, "_saga_rows.html",
        sagas=await queries.sagas(runtime.database, **chosen.model_dump()),
    )  # fmt: skip


@router.get("/fragments/stats", response_class=HTMLResponse)
async def stats(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return _page(
        request, "_stats.html",
        stats=await queries.stats(runtime.database, runtime.settings.stats_window_seconds),
        **await _nav(runtime),
    )  # fmt: skip


@router.get("/sagas/{order_id}", response_class=HTMLResponse)
async def saga_page(request: Request, order_id: UUID, runtime: RuntimeDep) -> HTMLResponse:
    return _page(request, "saga.html", **await _saga(runtime, order_id), **await _nav(runtime))


@router.get("/fragments/sagas/{order_id}", response_class=HTMLResponse)
async def saga_detail(request: Request, order_id: UUID, runtime: RuntimeDep) -> HTMLResponse:
    return _page(request, "_saga_detail.html", **await _saga(runtime, order_id))


async def _saga(runtime: Runtime, order_id: UUID) -> dict[str, Any]:
    saga = await queries.saga(runtime.database, order_id)
    if saga is None:
        raise HTTPException(404, f"No saga {order_id} has reached the dashboard.")
    now = datetime.now(UTC)
    deadline = saga["deadline_at"]
    passed = deadline is not None and deadline < (saga["finished_at"] or now)
    return {
        "saga": saga,
        "timeline": lay_out(saga, now),
        "letters": await runtime.dead_letters_of(order_id),
        "trace_url": _trace_url(runtime, saga["trace_id"]),
        "deadline_passed": passed
        and (saga["status"] == "IN_FLIGHT" or saga["reason"] == "timeout"),
    }


def _trace_url(runtime: Runtime, trace_id: str | None) -> str | None:
    """Where the trace viewer shows the saga's trace, when one is configured."""
    template = runtime.settings.trace_url
    return template.replace("{trace_id}", trace_id) if template and trace_id else None


@router.get("/stuck", response_class=HTMLResponse)
async def stuck(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return _page(request, "stuck.html", **await _stuck(runtime), **await _nav(runtime))


@router.get("/fragments/stuck", response_class=HTMLResponse)
async def stuck_rows(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return _page(request, "_stuck_rows.html", **await _stuck(runtime))


async def _stuck(runtime: Runtime) -> dict[str, Any]:
    stale = runtime.settings.stale_after_seconds
    return {"sagas": await queries.stuck(runtime.database, stale), "stale_seconds": stale}


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return _page(request, "dead_letters.html", **await _letters(runtime), **await _nav(runtime))


@router.get("/fragments/dead-letters", response_class=HTMLResponse)
async def dead_letter_groups(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return _page(request, "_dead_letters.html", **await _letters(runtime))


async def _letters(runtime: Runtime) -> dict[str, Any]:
    try:
        letters = await runtime.letters.all()
    except Exception as exc:  # the broker is away: say so, keep the page
        return {"groups": [], "unreachable": str(exc) or type(exc).__name__, "log": []}
    before = await runtime.letters.replayed_before([letter.message_id for letter in letters])
    return {
        "groups": groups(letters),
        "replayed_before": before,
        "log": await runtime.letters.log(),
        "unreachable": None,
    }


@router.get("/dead-letters/{service}/{message_id}", response_class=HTMLResponse)
async def dead_letter(
    request: Request, service: str, message_id: str, runtime: RuntimeDep
) -> HTMLResponse:
    letter = await _find(runtime, service, message_id)
    return _page(request, "letter.html", letter=letter, **await _nav(runtime))


async def _find(runtime: Runtime, service: str, message_id: str) -> DeadLetter:
    if service not in SERVICE_NAMES:
        raise HTTPException(404, f"There is no service {service!r}.")
    for letter in await runtime.letters.all():
        if (letter.service, letter.message_id) == (service, message_id):
            return letter
    raise HTTPException(404, f"{message_id} is not in {service}'s dead-letter queue (any more).")


Chosen = Annotated[list[str], Form(min_length=1, max_length=1000)]


@router.post("/dead-letters/replay", response_class=HTMLResponse)
async def confirm_replay(request: Request, chosen: Chosen, runtime: RuntimeDep) -> HTMLResponse:
    """The confirmation step: what would be replayed, and who replays it."""
    wanted = set(_pairs(chosen))
    letters = [d for d in await runtime.letters.all() if (d.service, d.message_id) in wanted]
    if not letters:
        raise HTTPException(404, "None of these messages is in its dead-letter queue any more.")
    return _page(request, "replay_confirm.html", letters=letters, **await _nav(runtime))


@router.post("/dead-letters/replay/confirm", response_class=HTMLResponse)
async def replay(
    request: Request,
    chosen: Chosen,
    operator: Annotated[str, Form(pattern=PRINTABLE)],
    runtime: RuntimeDep,
) -> HTMLResponse:
    replayed, missing = await runtime.letters.replay(_pairs(chosen), operator)
    if not replayed:
        raise HTTPException(404, "None of these messages is in its dead-letter queue any more.")
    runtime.live.publish(set(), dead_letters=True)
    return _page(
        request, "replay_done.html", replayed=replayed, missing=missing, operator=operator,
        **await _nav(runtime),
    )  # fmt: skip


def _pairs(chosen: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in chosen:
        service, _, message_id = item.partition("/")
        if service not in SERVICE_NAMES or not message_id:
            raise HTTPException(422, f"{item!r} names no dead letter (service/message_id).")
        pairs.append((service, message_id))
    return pairs


@router.get("/events")
async def events(
    request: Request, runtime: RuntimeDep, saga: UUID | None = None
) -> EventSourceResponse:
    """The page's live stream: `refresh` at once, then `sagas` (or `saga`, for the watched
    one) and `dead-letters` as they change, at most once a second, and `status` every two."""
    return EventSourceResponse(_stream(request, runtime, saga), ping=15)


async def _stream(
    request: Request, runtime: Runtime, watched: UUID | None
) -> AsyncIterator[dict[str, str]]:
    subscription = runtime.live.subscribe()
    try:
        yield {"event": "refresh", "data": "connected"}
        last_status = 0.0
        while not await request.is_disconnected():
            change = await subscription.next(within=STATUS_SECONDS)
            if change.sagas:
                yield {"event": "sagas", "data": str(len(change.sagas))}
                if watched in change.sagas:
                    yield {"event": "saga", "data": str(watched)}
            if change.dead_letters:
                yield {"event": "dead-letters", "data": "changed"}
            loop = asyncio.get_running_loop()
            if loop.time() - last_status >= STATUS_SECONDS:
                last_status = loop.time()
                yield {"event": "status", "data": _status_html(await _health(runtime))}
            await asyncio.sleep(PUSH_SECONDS)
    finally:
        runtime.live.unsubscribe(subscription)


async def _health(runtime: Runtime) -> dict[str, Any]:
    checks = await runtime.ready()
    return {"checks": checks, **runtime.follower.state}


def _status_html(health: dict[str, Any]) -> str:
    trouble = [f"{what} {state}" for what, state in health["checks"].items() if state != "ok"]
    if trouble:
        return f'<span class="pill bad" title="{"; ".join(trouble)}">{trouble[0]}</span>'
    return (
        f'<span class="pill good" title="stream offset {health["next_offset"]}">live · lag '
        f"{health['lag_seconds'] * 1000:.0f} ms</span>"
    )


async def _nav(runtime: Runtime) -> dict[str, Any]:
    """What every page's header shows: the stuck count, and the live status to begin with."""
    return {
        "stuck_count": await queries.stuck_count(
            runtime.database, runtime.settings.stale_after_seconds
        ),
        "status_html": _status_html(await _health(runtime)),
    }
