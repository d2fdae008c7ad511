"""The whole system without Docker (see core.py and __main__.py)."""

from scripts.stack.core import PROCESSES, RELAYS, SERVICES, Stack, StackConfig

__all__ = ["PROCESSES", "RELAYS", "SERVICES", "Stack", "StackConfig"]
