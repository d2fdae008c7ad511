"""The order service's saga metrics (SPEC.md, "Metrics"): what an operator watches the saga by.

Each terminal state is counted by the transaction that made it, after it commits
(`UnitOfWork.after_commit`): a duplicate or a late message moves nothing and counts nothing,
and a rolled-back transition is not counted. With several order processes each counts its own,
so sum over them; the gauges are read from the database, so every process reports the same
value: take the max.
"""

from prometheus_client import Counter, Gauge, Histogram

from services.order.state import Status
from shared.uow import UnitOfWork

FINISHED = Counter(
    "saga_sagas_finished_total",
    "Sagas that reached a terminal state, by outcome (confirmed, rejected, cancelled) and reason.",
    ["outcome", "reason"],
)
DURATION = Histogram(
    "saga_duration_seconds",
    "From POST /orders to the terminal state, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
IN_FLIGHT = Gauge("saga_sagas_in_flight", "Orders placed and not yet in a terminal state.")
OVERDUE = Gauge("saga_sagas_overdue", "In-flight orders past their deadline, not yet cancelled.")
NEEDING_ATTENTION = Gauge(
    "saga_sagas_needing_attention",
    "Orchestrated sagas whose compensation went unanswered after every send: for a person.",
)


def finished(uow: UnitOfWork, status: Status, reason: str | None, age_seconds: float) -> None:
    """Count a saga that reached `status` in this unit of work, `age_seconds` after it was
    placed, once it commits."""
    outcome = status.lower()

    def count() -> None:
        FINISHED.labels(outcome, reason or "none").inc()
        DURATION.labels(outcome).observe(age_seconds)

    uow.after_commit(count)
