"""Wires the order service together: settings, handlers, routes and the reaper."""

from functools import partial

from fastapi import FastAPI

from services.order.api import router
from services.order.handlers import HANDLERS
from services.order.reaper import run_reaper
from services.order.settings import OrderSettings
from shared.service import build_app


def create_app(settings: OrderSettings | None = None) -> FastAPI:
    settings = settings or OrderSettings()
    reaper = partial(
        run_reaper,
        interval_seconds=settings.reaper_interval_seconds,
        enabled=settings.reaper_enabled,
    )
    return build_app("order", settings, HANDLERS, router, background=[reaper])
