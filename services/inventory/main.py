"""Wires the inventory service together: settings, handlers and routes."""

from fastapi import FastAPI

from services.inventory.api import router
from services.inventory.handlers import HANDLERS
from services.inventory.settings import InventorySettings
from shared.service import build_app


def create_app(settings: InventorySettings | None = None) -> FastAPI:
    return build_app("inventory", settings or InventorySettings(), HANDLERS, router)
