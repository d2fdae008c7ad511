from services.inventory.main import create_app
from services.inventory.settings import InventorySettings
from shared.cli import main

main("inventory", InventorySettings, create_app)  # type: ignore[arg-type]
