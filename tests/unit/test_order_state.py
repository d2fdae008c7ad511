"""The order state machine: the full transition table, and properties over any event sequence."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.order.state import ALLOWED, IN_FLIGHT, TERMINAL, Status, path

ALLOWED_PAIRS = {
    (Status.PENDING, Status.PAID),
    (Status.PAID, Status.CONFIRMED),
    (Status.PENDING, Status.REJECTED),
    (Status.PAID, Status.REJECTED),
    (Status.PENDING, Status.CANCELLED),
    (Status.PAID, Status.CANCELLED),
}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(Status, Status)))
def test_the_transition_table(source: Status, target: Status) -> None:
    assert (target in ALLOWED[source]) == ((source, target) in ALLOWED_PAIRS)


def test_terminal_and_in_flight_statuses() -> None:
    assert {Status.CONFIRMED, Status.REJECTED, Status.CANCELLED} == TERMINAL
    assert {Status.PENDING, Status.PAID} == IN_FLIGHT


def test_a_reservation_that_overtakes_its_payment_confirms_through_paid() -> None:
    assert path(Status.PENDING, Status.CONFIRMED) == [Status.PAID, Status.CONFIRMED]


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
@pytest.mark.parametrize("target", list(Status))
def test_a_terminal_order_never_moves(terminal: Status, target: Status) -> None:
    assert path(terminal, target) == []


@given(st.lists(st.sampled_from(list(Status)), max_size=20))
def test_any_sequence_of_events_leaves_a_valid_state(targets: list[Status]) -> None:
    status, seen = Status.PENDING, [Status.PENDING]
    for target in targets:
        steps = path(status, target)
        for step in steps:
            assert step in ALLOWED[status], f"{status} -> {step}"
            status = step
            seen.append(status)
        if seen[-1] in TERMINAL:
            # Once terminal, nothing that arrives later moves the order.
            assert all(path(status, later) == [] for later in Status)
    # A status is never revisited: the machine only moves forward.
    assert len(seen) == len(set(seen))
