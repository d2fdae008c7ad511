from services.payment.main import create_app
from services.payment.settings import PaymentSettings
from shared.cli import main

main("payment", PaymentSettings, create_app)  # type: ignore[arg-type]
