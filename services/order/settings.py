from pydantic import Field

from shared.settings import ServiceSettings, database_url
from shared.system import ORDER


class OrderSettings(ServiceSettings):
    http_port: int = ORDER.port
    database_url: str = database_url(ORDER.database)
    # Every order must reach a terminal state by this long after it was placed; the reaper
    # cancels it otherwise.
    order_deadline_seconds: float = Field(default=30.0, gt=0)
    reaper_interval_seconds: float = Field(default=1.0, gt=0)
    # Off only to watch overdue orders pile up (GET /orders?overdue=true, saga_sagas_overdue).
    reaper_enabled: bool = True
    # Orchestrated: an unanswered compensation goes out again after this long, doubling each
    # time, until it has gone out MAX_SENDS times (services/order/saga.py).
    compensation_resend_seconds: float = Field(default=5.0, gt=0)
