from pydantic import Field

from shared.settings import CommonSettings, database_url
from shared.system import DASHBOARD


class DashboardSettings(CommonSettings):
    http_host: str = "127.0.0.1"
    http_port: int = DASHBOARD.port
    database_url: str = database_url(DASHBOARD.database)
    db_pool_size: int = 6
    # A saga in flight with no event for this long is stuck, as is one past its deadline.
    stale_after_seconds: float = Field(default=10.0, gt=0)
    # The window of the counts and percentiles at the top of the saga list.
    stats_window_seconds: float = Field(default=300.0, gt=0)
    # A link to the saga's trace in a trace viewer, `{trace_id}` standing for its id (empty:
    # the id alone is shown). docker-compose.yml's tracing profile sets it.
    trace_url: str = ""
    # At most this many stream messages are projected in one transaction.
    batch_size: int = Field(default=500, ge=1, le=10_000)
