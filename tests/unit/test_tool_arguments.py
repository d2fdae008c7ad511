"""The tools refuse a count or an amount they cannot work with, with a line naming the argument,
before they start anything: no stack, no load, no traceback later (scripts/arguments.py)."""

import contextlib
import importlib
import io
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# (module, arguments before the one tried, the option, the least it takes)
COUNTS = [
    ("scripts.perf.bench", [], "--idle-orders", 1),
    ("scripts.perf.bench", [], "--warm-up-orders", 1),
    ("scripts.perf.bench", [], "--saturation-orders", 1),
    ("scripts.perf.bench", [], "--transport-messages", 1),
    ("scripts.perf.bench", [], "--rounds", 1),
    ("scripts.perf.bench", [], "--history", 0),
    ("scripts.perf.load", [], "--orders", 1),
    ("scripts.perf.load", [], "--concurrency", 1),
    ("scripts.perf.profile", [], "--orders", 1),
    ("scripts.perf.profile", [], "--top", 1),
    ("scripts.chaos.__main__", [], "--orders", 1),
    ("scripts.chaos.__main__", [], "--concurrency", 1),
    ("scripts.chaos.__main__", [], "--rounds", 0),
    ("scripts.chaos.__main__", [], "--every", 0),
    ("scripts.chaos.soak", [], "--every", 1),
    ("scripts.chaos.stream_loss", [], "--restarts", 1),
    ("scripts.ops.check", [], "--allow-dlq", 0),
    ("scripts.ops.walkthrough", ["redeliver", "latest"], "--times", 1),
]
AMOUNTS = [
    ("scripts.perf.bench", "--seconds"),
    ("scripts.perf.load", "--rate"),
    ("scripts.perf.load", "--timeout"),
    ("scripts.chaos.__main__", "--seconds"),
    ("scripts.chaos.__main__", "--rate"),
    ("scripts.chaos.soak", "--minutes"),
    ("scripts.chaos.soak", "--rate"),
]


def refusal(module: str, argv: list[str]) -> str:
    """What the tool printed as it exited with status 2; fails if it went on."""
    main = importlib.import_module(module).main
    stderr = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stderr(stderr),
        pytest.raises(SystemExit) as exited,
    ):
        patch.setattr(sys, "argv", [module, *argv])
        main()
    assert exited.value.code == 2, stderr.getvalue()
    return stderr.getvalue()


@pytest.mark.parametrize(("module", "before", "option", "least"), COUNTS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_count_below_its_least_is_refused_by_name(
    module: str, before: list[str], option: str, least: int, data: st.DataObject
) -> None:
    value = data.draw(st.integers(max_value=least - 1) | st.sampled_from(["", "x", "1.5", "1e3"]))
    said = refusal(module, [*before, f"{option}={value}"])
    assert f"argument {option}:" in said
    assert "must be at least" in said or "a whole number" in said
    assert "Traceback" not in said


@pytest.mark.parametrize(("module", "option"), AMOUNTS)
@settings(max_examples=25, deadline=None)
@given(value=st.floats(max_value=0) | st.just(math.nan) | st.sampled_from(["", "fast"]))
def test_an_amount_that_is_not_above_zero_is_refused_by_name(
    module: str, option: str, value: float | str
) -> None:
    said = refusal(module, [f"{option}={value}"])
    assert f"argument {option}:" in said
    assert "must be above 0" in said or "a number" in said


def test_the_least_count_is_taken() -> None:
    """The types refuse below their least, not at it: `--rounds 1` parses."""
    from scripts.arguments import above, at_least

    assert at_least(1)("1") == 1
    assert at_least(0)("0") == 0
    assert above(0)("0.5") == 0.5
