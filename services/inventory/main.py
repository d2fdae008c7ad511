"""Wires the inventory service together: settings, handlers and routes."""

from fastapi import FastAPI

from services.inventory.api import router
from services.inventory.handlers import COMMAND_HANDLERS, HANDLERS
from services.inventory.settings import InventorySettings
from shared.service import build_app
from shared.system import Mode


def create_app(settings: InventorySettings | None = None) -> FastAPI:
    settings = settings or InventorySettings()
    # In orchestration the service takes commands only (SPEC.md, "Orchestration mode").
    handlers = COMMAND_HANDLERS if settings.saga_mode is Mode.ORCHESTRATION else HANDLERS
    return build_app("inventory", settings, handlers, router)
