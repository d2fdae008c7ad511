from shared.settings import ServiceSettings, database_url
from shared.system import INVENTORY


class InventorySettings(ServiceSettings):
    http_port: int = INVENTORY.port
    database_url: str = database_url(INVENTORY.database)
