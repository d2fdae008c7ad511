from shared.settings import ServiceSettings, database_url
from shared.system import PAYMENT


class PaymentSettings(ServiceSettings):
    http_port: int = PAYMENT.port
    database_url: str = database_url(PAYMENT.database)
