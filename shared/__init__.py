"""The machinery every service shares: envelope, events, outbox, inbox, consumer, topology."""
