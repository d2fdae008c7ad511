"""Prometheus metrics shared by the services and relays (README, "Metrics and alerts")."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "saga_messages_total",
    "Messages consumed, by event type and outcome (applied, duplicate, retried, dead_lettered).",
    ["type", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "saga_handle_seconds",
    "Time to apply one message: lock, inbox, effect, outbox, commit (its batch's, if any).",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_UNITS = Histogram(
    "saga_batch_units",
    "Units of work committed in one transaction (1: alone; shared/batching.py), by what they "
    "came from: the consumer's deliveries (messages) or the write routes' requests.",
    ["source"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
RELAY_PUBLISHED = Counter("saga_relay_published_total", "Outbox rows published and confirmed.")
RELAY_FAILED = Counter(
    "saga_relay_failed_total",
    "Publishes that were returned, nacked or lost; their rows stay pending.",
)
RELAY_PENDING = Gauge("saga_relay_pending_rows", "Outbox rows not yet published.")
RELAY_LAG_SECONDS = Gauge(
    "saga_relay_lag_seconds",
    "The relay's lag: age of the oldest unpublished outbox row (0 when all are published).",
)

READY = Gauge("saga_ready", "1 when the process can reach its database and the broker (/readyz).")

# Saga-level metrics (SPEC.md, "Metrics"); the order service's own are in services/order/.
COMPENSATIONS = Counter(
    "saga_compensations_total",
    "Compensations made, by kind: a refund (payment) or a release (inventory).",
    ["kind"],
)
DLQ_MESSAGES = Gauge(
    "saga_dlq_messages", "Messages waiting in the service's dead-letter queue.", ["queue"]
)
