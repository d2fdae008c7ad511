"""Wires the order service together: settings, handlers (or, orchestrated, the orchestrator's),
routes and the reaper."""

from functools import partial

from fastapi import APIRouter, FastAPI

from services.order import api, saga_api
from services.order.handlers import HANDLERS
from services.order.orchestrator import REPLY_HANDLERS
from services.order.reaper import run_reaper
from services.order.settings import OrderSettings
from shared.service import build_app
from shared.system import Mode


def create_app(settings: OrderSettings | None = None) -> FastAPI:
    settings = settings or OrderSettings()
    orchestrated = settings.saga_mode is Mode.ORCHESTRATION
    reaper = partial(
        run_reaper,
        interval_seconds=settings.reaper_interval_seconds,
        enabled=settings.reaper_enabled,
        orchestrated=orchestrated,
    )
    router = APIRouter()
    router.include_router(api.router)
    router.include_router(saga_api.router)
    handlers = REPLY_HANDLERS if orchestrated else HANDLERS
    return build_app("order", settings, handlers, router, background=[reaper])
