"""Settings: one pydantic-settings object per process, read from the environment.

The defaults run against a local PostgreSQL and RabbitMQ; docker-compose.yml and the no-Docker
stack override them with the same variable names.
"""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.system import Mode
from shared.topology import AUDIT_SEGMENT_BYTES


def database_url(database: str, host: str = "127.0.0.1", port: int = 5432) -> str:
    return f"postgresql+psycopg://postgres@{host}:{port}/{database}"


class CommonSettings(BaseSettings):
    """What every process (service or relay) reads."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Choreography or orchestration (SPEC.md, "Orchestration mode"): the same for every process
    # of a stack.
    saga_mode: Mode = Mode.CHOREOGRAPHY
    log_level: str = "INFO"
    log_json: bool = False
    # The trace id in every log line of a saga (shared/tracing.py); unset: in JSON lines only.
    log_trace_ids: bool | None = None
    # "all": declare the whole broker topology (a broker user allowed everything); "own":
    # declare only this process's queues, the administrator having declared the rest
    # (shared/topology.py).
    declare_topology: Literal["all", "own"] = "all"
    # Transient failures are retried after these delays, then dead-lettered. Every process
    # declares the delay queues (shared/topology.py), so every process reads them.
    retry_delays_ms: list[int] = [1_000, 5_000, 30_000, 60_000, 120_000]
    # The size of the audit stream's segment files, as the stream is declared (the same for
    # every process that declares it).
    audit_segment_bytes: int = Field(default=AUDIT_SEGMENT_BYTES, ge=4096)


class ServiceSettings(CommonSettings):
    """A service process: its HTTP API and its consumer."""

    http_host: str = "127.0.0.1"
    http_port: int
    database_url: str
    # The most connections of the write path's pool, made as needed: deliveries in progress
    # (up to the prefetch) and API requests share them.
    db_pool_size: int = 16
    # How many deliveries one process works on at once (the channel's prefetch). Under load
    # they are what a batch is made of: at saturation here 128 made 1.27 times the sagas/s
    # of 16 for 0.78 times the CPU per saga (medians), and nothing changed at 50/s
    # (docs/DESIGN.md, decision 24).
    consumer_prefetch: int = Field(default=128, ge=1, le=1000)
    # The most units of work committed in one transaction (shared/batching.py): those
    # deliveries, and the write routes' requests (POST /orders, cancel); 1: each alone.
    consumer_batch_size: int = Field(default=128, ge=1, le=1000)
    # Inbox rows older than this are pruned (checked every prune interval).
    inbox_retention_seconds: float = Field(default=30 * 86_400, gt=0)
    prune_interval_seconds: float = Field(default=300, gt=0)
    # Fault injection for tests and demos; empty means off.
    fault_crash_after_commit: str = ""  # a routing key: SIGKILL self after committing its effect
    fault_fail_handler: str = ""  # "handler_name:N": that handler raises N times, then works
