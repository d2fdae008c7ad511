"""Wires the order service together: settings, its coordination (services/order/coordination.py,
chosen once: the handlers and the reaper's pass of its style), routes and the reaper."""

from functools import partial

from fastapi import APIRouter, FastAPI

from services.order import api, saga_api
from services.order.coordination import coordination_of
from services.order.reaper import run_reaper
from services.order.settings import OrderSettings
from shared.service import build_app


def create_app(settings: OrderSettings | None = None) -> FastAPI:
    settings = settings or OrderSettings()
    coordination = coordination_of(settings)
    reaper = partial(
        run_reaper,
        coordination=coordination,
        interval_seconds=settings.reaper_interval_seconds,
        enabled=settings.reaper_enabled,
    )
    router = APIRouter()
    router.include_router(api.router)
    router.include_router(saga_api.router)
    app = build_app("order", settings, coordination.handlers, router, background=[reaper])
    app.state.coordination = coordination
    return app
