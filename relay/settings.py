from pydantic import Field

from shared.settings import CommonSettings


class RelaySettings(CommonSettings):
    database_url: str = ""  # empty: the service's local default database (see __main__.py)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    # The NOTIFY trigger wakes the relay at once; polling only covers a missed notification.
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    metrics_port: int = 0  # 0: no /metrics endpoint
    # Fault injection: SIGKILL self after the broker confirmed a batch, before marking it.
    fault_crash_after_publish: bool = False
