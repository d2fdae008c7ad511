"""Fault injection, off by default: tests and demos use it to hit exact crash windows."""

import os
import signal


class Faults:
    def __init__(self, crash_after_commit: str = "", fail_handler: str = "") -> None:
        self._crash_after_commit = crash_after_commit
        name, _, times = fail_handler.partition(":")
        self._fail_handler = name
        self._failures_left = int(times or 0) if name else 0

    def maybe_fail(self, handler_name: str) -> None:
        """Raise in the named handler until it has failed the configured number of times."""
        if handler_name == self._fail_handler and self._failures_left > 0:
            self._failures_left -= 1
            raise InjectedFault(f"injected failure in {handler_name}")

    def maybe_crash_after_commit(self, routing_key: str) -> None:
        """Die like `kill -9` between the commit and the ack."""
        if routing_key == self._crash_after_commit:
            crash()


class InjectedFault(RuntimeError):
    pass


def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    # Still here: we are PID 1 of a container, which ignores even SIGKILL from inside.
    os._exit(137)
