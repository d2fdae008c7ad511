"""Prometheus metrics shared by the services and relays."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "saga_messages_total",
    "Messages consumed, by event type and outcome (applied, duplicate, retried, dead_lettered).",
    ["type", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "saga_handle_seconds",
    "Time to apply one message: lock, inbox, effect, outbox, commit.",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RELAY_PUBLISHED = Counter("saga_relay_published_total", "Outbox rows published and confirmed.")
RELAY_FAILED = Counter(
    "saga_relay_failed_total",
    "Publishes that were returned, nacked or lost; their rows stay pending.",
)
RELAY_PENDING = Gauge("saga_relay_pending_rows", "Outbox rows not yet published.")
RELAY_OLDEST_SECONDS = Gauge(
    "saga_relay_oldest_pending_seconds", "Age of the oldest unpublished outbox row."
)
