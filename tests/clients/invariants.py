"""SPEC.md's invariants over a stack, read by scripts/ops/check.py."""

from scripts.ops.check import check, snapshot
from scripts.stack import StackConfig
from tests.polling import wait_until


def wait_consistent(config: StackConfig, timeout: float = 30.0, what: str = "") -> None:
    """Poll the check until no invariant is broken: compensations may still be in flight when
    the last order turned terminal."""
    wait_until(
        lambda: not any(invariant.violations for invariant in check(snapshot(config))),
        timeout,
        what or "every invariant to hold",
    )
