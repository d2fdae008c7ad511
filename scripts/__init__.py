"""User-facing tools: the no-Docker stack, and (later) load, chaos, check and DLQ tooling."""
