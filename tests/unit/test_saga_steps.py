"""The orchestrator's step table (services/order/saga.py), driven by hypothesis against a model of
payment and inventory: whatever the order of the replies, their duplicates, the cancels and the
timers, every saga ends COMPLETED or COMPENSATED, and the money and the stock agree with it."""

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.order.saga import (
    CANCELLED,
    MAX_SENDS,
    RESEND,
    START,
    Happened,
    Saga,
    SagaStatus,
    Send,
    Step,
    decide,
)
from services.order.state import IN_FLIGHT, TERMINAL, Status, path
from shared.events import (
    Event,
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)


@dataclass
class Participants:
    """Payment and inventory as their command handlers behave (services/payment/handlers.py,
    services/inventory/handlers.py): a refund or release remembers the order as closed."""

    funded: bool
    stocked: bool
    charged: bool = False
    refunded: bool = False
    payment_closed: bool = False
    reserved: bool = False
    released: bool = False
    inventory_closed: bool = False

    def handle(self, command: Send) -> type[Event] | None:
        """The reply's event class, or None when the handler answers nothing."""
        if command is Send.CHARGE:
            if self.payment_closed or not self.funded:
                return PaymentFailed
            if self.charged:
                return None  # "already charged"
            self.charged = True
            return PaymentSucceeded
        if command is Send.REFUND:
            self.payment_closed = True
            if not self.charged:
                return PaymentFailed
            self.refunded = True
            return PaymentRefunded
        if command is Send.RESERVE:
            if self.inventory_closed or not self.stocked:
                return InventoryFailed
            if self.reserved:
                return None
            self.reserved = True
            return InventoryReserved
        self.inventory_closed = True
        if not self.reserved:
            return InventoryFailed
        self.released = True
        return InventoryReleased


@dataclass
class World:
    participants: Participants
    saga: Saga = START
    order: Status = Status.PENDING
    # Messages on their way: ("command", Send) to a participant, ("reply", type) to the
    # orchestrator.
    in_flight: list[tuple[str, Any]] = field(default_factory=lambda: [("command", Send.CHARGE)])

    def orchestrate(self, happened: Happened, reason: str | None = None) -> None:
        decision = decide(self.saga, happened, reason)
        if decision.order is not None:
            steps = path(self.order, decision.order)
            assert steps, f"the step table moved a {self.order} order to {decision.order}"
            self.order = steps[-1]
        self.saga = decision.saga
        self.in_flight += [("command", send) for send in decision.send]

    def deliver(self, index: int, duplicate: bool) -> None:
        kind, what = self.in_flight[index] if duplicate else self.in_flight.pop(index)
        if kind == "command":
            reply = self.participants.handle(Send(what))
            if reply is not None:
                self.in_flight.append(("reply", reply))
        else:
            self.orchestrate(what, "out_of_stock" if what is InventoryFailed else "declined")

    def cancel(self) -> None:
        if self.order in IN_FLIGHT:  # commands.cancel_order: the order, then its saga
            self.order = Status.CANCELLED
            self.orchestrate(CANCELLED)

    def resend(self) -> None:
        if self.saga.status is SagaStatus.COMPENSATING:
            self.orchestrate(RESEND)


actions = st.lists(
    st.tuples(st.sampled_from(["deliver", "duplicate", "cancel", "resend"]), st.integers(0, 1_000)),
    max_size=40,
)


@settings(max_examples=600, deadline=None)
@given(funded=st.booleans(), stocked=st.booleans(), script=actions)
def test_any_order_of_replies_duplicates_and_timeouts_ends_completed_or_compensated(
    funded: bool, stocked: bool, script: list[tuple[str, int]]
) -> None:
    world = World(Participants(funded, stocked))
    for action, n in script:
        if action in ("deliver", "duplicate") and world.in_flight:
            world.deliver(n % len(world.in_flight), duplicate=action == "duplicate")
        elif action == "cancel":
            world.cancel()
        elif action == "resend":
            world.resend()

    # Then the system goes quiet: everything is delivered, the deadline passes for a saga
    # still running, and the timer resends whatever is unanswered.
    for _ in range(200):
        if world.in_flight:
            world.deliver(0, duplicate=False)
        elif world.saga.status is SagaStatus.RUNNING:
            world.cancel()
        elif world.saga.status is SagaStatus.COMPENSATING:
            world.resend()
        else:
            break

    saga, order, money_and_stock = world.saga, world.order, world.participants
    assert saga.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED), saga
    assert saga.step is Step.DONE and not saga.awaiting
    assert order in TERMINAL
    assert (order is Status.CONFIRMED) == (saga.status is SagaStatus.COMPLETED)
    if saga.status is SagaStatus.COMPLETED:
        assert money_and_stock.charged and not money_and_stock.refunded
        assert money_and_stock.reserved and not money_and_stock.released
    else:
        assert money_and_stock.charged == money_and_stock.refunded
        assert money_and_stock.reserved == money_and_stock.released


def test_a_compensation_never_answered_needs_attention_after_max_sends() -> None:
    saga = decide(decide(START, PaymentSucceeded).saga, CANCELLED).saga
    assert saga.status is SagaStatus.COMPENSATING and saga.sends == 1
    sent = 1
    while saga.status is SagaStatus.COMPENSATING:
        decision = decide(saga, RESEND)
        sent += len(decision.send) // 2  # refund and release go out together
        saga = decision.saga
    assert saga.status is SagaStatus.NEEDS_ATTENTION and sent == MAX_SENDS
    assert decide(saga, RESEND).changed is False  # a person's now; no more sends
    # A reply that comes at last still finishes it.
    saga = decide(decide(saga, PaymentRefunded).saga, InventoryReleased).saga
    assert saga.status is SagaStatus.COMPENSATED


def test_a_success_that_comes_after_the_saga_gave_up_is_undone() -> None:
    compensated = Saga(SagaStatus.COMPENSATED, Step.DONE, reason="order_cancelled")
    decision = decide(compensated, InventoryReserved)
    assert decision.send == (Send.RELEASE,)
    assert decision.saga.status is SagaStatus.COMPENSATING
    assert decide(Saga(SagaStatus.COMPLETED, Step.DONE), PaymentSucceeded).changed is False
