from services.order.main import create_app
from services.order.settings import OrderSettings
from shared.cli import main

main("order", OrderSettings, create_app)  # type: ignore[arg-type]
