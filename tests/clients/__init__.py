"""Asserting clients for the tests, one module per thing they talk to (as cosmicpython's
tests/e2e/api_client.py and redis_client.py): the HTTP APIs, the broker, the databases and the
stack's processes. Each test makes its own random customers, skus and orders, so tests never
depend on empty tables or on each other.
"""

from typing import Protocol

from scripts.stack import StackConfig


class Reachable(Protocol):
    """A running stack, as the clients reach it: the no-Docker `Stack`, or the compose stack
    (tests/compose/)."""

    @property
    def config(self) -> StackConfig: ...
