"""The stack's processes: what they logged, and runs with one stopped or set otherwise."""

import contextlib
from collections.abc import Iterator

from scripts.stack import Stack
from tests.polling import wait_until


class LogCursor:
    """What a process logged after a point: `cursor = LogCursor(stack, "payment")`, act, then
    `cursor.read()`."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.path = stack.log_path(name)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def read(self) -> str:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 15.0) -> str:
        return wait_until(
            lambda: out if (out := self.read()).count(text) >= count else None,
            timeout,
            f"{count} x {text!r} in {self.path.name}",
        )


@contextlib.contextmanager
def stopped(stack: Stack, *names: str) -> Iterator[None]:
    """Stop processes for the block, start them again after it (whatever happens)."""
    stack.stop(*names)
    try:
        yield
    finally:
        stack.start(*names)
        stack.wait_ready(*names)


@contextlib.contextmanager
def restarted_with(stack: Stack, name: str, **env: str) -> Iterator[None]:
    """Run one process with extra settings for the block, then as it normally runs."""
    stack.stop(name)
    stack.start(name, **env)
    try:
        stack.wait_ready(name)
        yield
    finally:
        stack.stop(name)
        stack.start(name)
        stack.wait_ready(name)
