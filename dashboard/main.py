"""Wires the dashboard together: its runtime, the follower, the API, the pages, the static
files, and errors as pages or JSON."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from dashboard import api, pages
from dashboard.runtime import Runtime
from dashboard.settings import DashboardSettings
from shared import http, log
from shared.service import operations_router

logger = logging.getLogger("dashboard")


def create_app(settings: DashboardSettings | None = None) -> FastAPI:
    settings = settings or DashboardSettings()
    log.setup("dashboard", settings.log_level, settings.log_json)
    runtime = Runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.database.open()
        follower = asyncio.create_task(runtime.follower.run(), name="follower")
        logger.info("dashboard listening on %s:%d", settings.http_host, settings.http_port)
        try:
            yield
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await runtime.database.close()

    app = FastAPI(title="saga dashboard", lifespan=lifespan, max_body_size=http.MAX_BODY_BYTES)
    app.state.runtime = runtime
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(operations_router())
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_exception_handler(HTTPException, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    for unavailable in (OperationalError, psycopg.OperationalError, OSError, TimeoutError):
        app.add_exception_handler(unavailable, _unavailable)
    return app


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/fragments/", "/events", "/static/"))


def _answer(
    request: Request, status: int, detail: object, headers: Mapping[str, str] | None = None
) -> Response:
    """An error as JSON for the API, as a page for a person."""
    if not _wants_page(request):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    return pages.TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status": status, "detail": _readable(detail)},
        status_code=status,
        headers=headers,
    )


async def _refused(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 405:
        allowed = {"Allow": http.allowed_methods(request)}
        return _answer(request, 405, f"{request.method} is not allowed here", allowed)
    return _answer(request, exc.status_code, exc.detail, exc.headers)


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    return _answer(request, *http.refusal(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return _answer(request, 503, "the dashboard's database is unavailable; try again")


def _readable(detail: object) -> str:
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'request'}: {error['msg']}"
            for error in detail
        )
    return str(detail)
