"""Invariant 7's comparison, pure (scripts/ops/dashboard_check.py): the projection's rows held to
the offsets and message ids the stream delivered, gaps and all, each fault named; and the gaps
the follower reads twice (dashboard/follower.py)."""

import pytest

from dashboard.follower import gaps
from scripts.ops.check import Invariant
from scripts.ops.dashboard_check import Stream, compare

# As RabbitMQ numbers a stream that rolled over to new segments twice: offsets 3 and 6 unused.
STREAM = Stream({0: "a", 1: "b", 2: "c", 4: "d", 5: "b", 7: "e"}, disorder=[])
# The projection of it: message b came twice (a publish repeated), the second a repeat.
PROJECTED = [(0, "a", False), (1, "b", False), (2, "c", False), (4, "d", False), (5, "b", True),
             (7, "e", False)]  # fmt: skip


def violations(stream: Stream, projected: list[tuple[int, str, bool]]) -> list[str]:
    invariant = Invariant("7")
    compare(stream, projected, invariant)
    assert invariant.checked == len(stream.ids)
    return invariant.violations


def test_a_projection_of_a_stream_with_gaps_holds() -> None:
    assert violations(STREAM, PROJECTED) == []
    assert STREAM.end == 8


@pytest.mark.parametrize(
    ("projected", "named"),
    [
        (
            [row for row in PROJECTED if row[0] != 4],
            "the projection: 1 x lacks offset 4 (d)",
        ),
        (
            [*PROJECTED, (8, "f", False)],
            "the projection: 1 x has offset not in the stream 8 (f)",
        ),
        (
            [(o, "x" if o == 2 else m, r) for o, m, r in PROJECTED],
            "the projection: 1 x holds another message at offset 2 (projected as x, the stream "
            "holds c)",
        ),
        (
            [(o, m, False) for o, m, _ in PROJECTED],
            "the projection: 1 x counts as new more than once message b",
        ),
        (
            [(o, m, o in (1, 5)) for o, m, _ in PROJECTED],
            "the projection: 1 x counts only as a repeat message b",
        ),
    ],
    ids=["missing", "extra", "another-message", "new-twice", "only-repeats"],
)
def test_each_fault_is_named_by_its_offset_or_message_id(
    projected: list[tuple[int, str, bool]], named: str
) -> None:
    assert violations(STREAM, projected) == [named]


def test_offsets_in_the_old_reading_of_0_to_n_would_be_faults() -> None:
    """The invariant as it stood (offsets 0 to n - 1) fails on a correct projection of a stream
    with gaps; held to the stream's own offsets it holds, and a projection numbered 0 to n - 1
    is what is wrong."""
    numbered = [(n, m, r) for n, (_, m, r) in enumerate(PROJECTED)]
    assert [row[0] for row in PROJECTED] != list(range(len(STREAM.ids)))
    assert violations(STREAM, numbered) == [
        "the projection: 1 x lacks offset 7 (e)",
        "the projection: 1 x has offset not in the stream 3 (d)",
        "the projection: 2 x holds another message at offset 4 (projected as b, the stream "
        "holds d), 5 (projected as e, the stream holds b)",
    ]


def test_a_stream_that_delivers_out_of_order_is_named_too() -> None:
    stream = Stream(STREAM.ids, disorder=[5])
    assert violations(stream, PROJECTED) == [
        "the stream: 1 x delivered out of order or twice at offset 5"
    ]


def test_many_faults_are_counted_and_the_first_ten_named() -> None:
    stream = Stream({n: f"m{n}" for n in range(25)}, disorder=[])
    [said] = violations(stream, [])
    assert said.startswith("the projection: 25 x lacks offset 0 (m0), 1 (m1),")
    assert said.endswith("9 (m9), and 15 more")


@pytest.mark.parametrize(
    ("offsets", "position", "skipped"),
    [
        ([0, 1, 2], 0, []),
        ([3, 4], 3, []),
        ([0, 1, 3, 4, 6], 0, [(2, 3), (5, 6)]),
        ([5, 6], 3, [(3, 5)]),  # from the position on
        ([], 7, []),
    ],
)
def test_the_follower_finds_each_run_of_offsets_a_batch_skips(
    offsets: list[int], position: int, skipped: list[tuple[int, int]]
) -> None:
    assert gaps(offsets, position) == skipped
