"""The three services of the order saga; each owns its database and talks only by events."""
