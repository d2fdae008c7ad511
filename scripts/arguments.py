"""Argument types the tools share: a count or an amount refused, with a line saying why, before
anything starts (a stack, a load, a fault)."""

import argparse
from collections.abc import Callable


def at_least(minimum: int) -> Callable[[str], int]:
    """An integer of `minimum` or more: `--orders 0` is an error, not a crash later."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a whole number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def above(minimum: float) -> Callable[[str], float]:
    """A number greater than `minimum`: `--rate 0` is an error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a number, not {text!r}") from None
        if not value > minimum:  # NaN too
            raise argparse.ArgumentTypeError(f"must be above {minimum:g}, not {text}")
        return value

    return parse
