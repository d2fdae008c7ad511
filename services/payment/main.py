"""Wires the payment service together: settings, handlers and routes."""

from fastapi import FastAPI

from services.payment.api import router
from services.payment.handlers import HANDLERS
from services.payment.settings import PaymentSettings
from shared.service import build_app


def create_app(settings: PaymentSettings | None = None) -> FastAPI:
    return build_app("payment", settings or PaymentSettings(), HANDLERS, router)
