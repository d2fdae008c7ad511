"""Wires the payment service together: settings, handlers and routes."""

from fastapi import FastAPI

from services.payment.api import router
from services.payment.handlers import COMMAND_HANDLERS, HANDLERS
from services.payment.settings import PaymentSettings
from shared.service import build_app
from shared.system import Mode


def create_app(settings: PaymentSettings | None = None) -> FastAPI:
    settings = settings or PaymentSettings()
    # In orchestration the service takes commands only (SPEC.md, "Orchestration mode").
    handlers = COMMAND_HANDLERS if settings.saga_mode is Mode.ORCHESTRATION else HANDLERS
    return build_app("payment", settings, handlers, router)
