"""The outbox relay: publishes each service database's outbox rows with publisher confirms."""
