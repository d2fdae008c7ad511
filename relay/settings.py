from pydantic import Field

from shared.settings import CommonSettings


class RelaySettings(CommonSettings):
    database_url: str = ""  # empty: the service's local default database (see __main__.py)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    # The NOTIFY trigger wakes the relay at once; polling only covers a missed notification.
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    # After a batch of more than one row (rows arrive faster than a pass publishes them), wait
    # this long before the next claim so that it takes more rows. Measured at saturation here:
    # 3 ms took the stack from about 130 to about 147 sagas/s, with no change to the latency at
    # 50 sagas/s (docs/DESIGN.md, decision 2).
    linger_seconds: float = Field(default=0.003, ge=0, le=1)
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    metrics_port: int = 0  # 0: no /metrics endpoint
    # Published rows older than this are pruned (checked every prune interval).
    outbox_retention_seconds: float = Field(default=7 * 86_400, gt=0)
    prune_interval_seconds: float = Field(default=300, gt=0)
    # Fault injection: SIGKILL self after the broker confirmed a batch, before marking it.
    fault_crash_after_publish: bool = False
