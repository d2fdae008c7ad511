from shared.settings import ServiceSettings, database_url


class InventorySettings(ServiceSettings):
    http_port: int = 8003
    database_url: str = database_url("saga_inventory")
