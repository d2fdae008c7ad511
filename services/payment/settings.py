from shared.settings import ServiceSettings, database_url


class PaymentSettings(ServiceSettings):
    http_port: int = 8002
    database_url: str = database_url("saga_payment")
