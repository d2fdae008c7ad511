"""The saga, declared once: who coordinates it, what starts and cancels it, and its steps, each
with the participant that does it, the command that asks for it, the events that end it and
the compensation that undoes it; and its pivot.

Everything that says who takes which message derives it from here (shared/system.py: each
service's bindings in either mode; the handler tables are checked against it when a process
starts, shared/uow.py), so a step added here is bound, routed and checked everywhere at once.

The two coordination styles read the same steps:
- choreographed, a step's participant acts on the event before it (the saga's start for the
  first step, the previous step's success for the others) and undoes its work on the saga's
  cancel or on the failure of any later step; the coordinator follows every step's success
  and failure;
- orchestrated, the coordinator sends each step's command and its compensation, and takes
  every step's success, failure and compensation back as replies.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.commands import (
    ChargePayment,
    Command,
    RefundPayment,
    ReleaseInventory,
    ReserveInventory,
)
from shared.events import (
    Event,
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    OrderRejected,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)


@dataclass(frozen=True)
class Words:
    """How a step reads on the dashboard (dashboard/projection.py): the fact its success
    establishes and what its participant is waiting to do; the same for its compensation."""

    done: str  # "charged"
    doing: str  # "charge the customer"
    undone: str | None = None  # "refunded"
    undoing: str | None = None  # "refund the charge"


@dataclass(frozen=True)
class Step:
    name: str
    participant: str
    action: type[Command]  # what the orchestrator sends for it
    succeeded: type[Event]
    failed: type[Event]
    # The coordinator's state once the step succeeded (the order's status: PAID, CONFIRMED).
    reached: str
    words: Words
    # What undoes it, and the event that says it was undone; None for a step past the pivot,
    # which is retried until it succeeds and never compensated.
    compensation: type[Command] | None = None
    compensated: type[Event] | None = None

    @property
    def failed_fact(self) -> str:
        """The fact its failure establishes: `payment_failed`."""
        return f"{self.participant}_failed"


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    coordinator: str  # the service that starts the saga, owns its state and ends it
    started_by: type[Event]
    # How the coordinator announces the saga's end: its way forward, a failed step, a cancel.
    confirmed_by: type[Event]
    rejected_by: type[Event]
    cancelled_by: type[Event]
    steps: tuple[Step, ...]
    # The step whose success decides the saga: after it nothing is compensated.
    pivot: str
    # Services outside the steps that follow some of the saga's events (a notifier, say),
    # the same in either style: by name, the events each takes.
    listeners: Mapping[str, tuple[type[Event], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        if self.pivot not in names:
            raise ValueError(f"the pivot {self.pivot!r} is none of the steps {names}")
        for step in self.steps:
            undoing = (step.compensation, step.compensated, step.words.undone, step.words.undoing)
            if len({part is None for part in undoing}) > 1:  # some given, some not
                raise ValueError(
                    f"step {step.name!r}: a compensation needs its event and its words, and back"
                )
            if names.index(step.name) > names.index(self.pivot) and step.compensation:
                raise ValueError(f"step {step.name!r} is past the pivot: it cannot be undone")

    @property
    def participants(self) -> tuple[str, ...]:
        """Everyone in the saga: the coordinator, each step's participant in step order, then
        the listeners."""
        steps = [step.participant for step in self.steps]
        return tuple(dict.fromkeys([self.coordinator, *steps, *self.listeners]))

    def trigger(self, step: Step) -> type[Event]:
        """What a choreographed step acts on: the saga's start, or the success before it."""
        index = self.steps.index(step)
        return self.started_by if index == 0 else self.steps[index - 1].succeeded

    def undone_by(self, step: Step) -> tuple[type[Event], ...]:
        """What a choreographed step's compensation acts on: the cancel, and the failure of
        every later step."""
        if step.compensation is None:
            return ()
        later = self.steps[self.steps.index(step) + 1 :]
        return (self.cancelled_by, *(after.failed for after in later))

    def choreography(self, participant: str) -> tuple[type[Event], ...]:
        """The events a participant's work queue takes in choreography."""
        if participant in self.listeners:
            return self.listeners[participant]
        if participant == self.coordinator:
            taken = [event for step in self.steps for event in (step.succeeded, step.failed)]
        else:
            taken = [
                event
                for step in self.steps
                if step.participant == participant
                for event in (self.trigger(step), *self.undone_by(step))
            ]
        return tuple(dict.fromkeys(taken))

    def commands(self, participant: str) -> tuple[type[Command], ...]:
        """The commands a participant takes in orchestration."""
        return tuple(
            command
            for step in self.steps
            if step.participant == participant
            for command in (step.action, step.compensation)
            if command is not None
        )

    def replies(self) -> tuple[type[Event], ...]:
        """The events the orchestrator takes in orchestration: every step's outcomes."""
        return tuple(
            event
            for step in self.steps
            for event in (step.succeeded, step.failed, step.compensated)
            if event is not None
        )


ORDER_SAGA = SagaDefinition(
    name="order",
    coordinator="order",
    started_by=OrderCreated,
    confirmed_by=OrderConfirmed,
    rejected_by=OrderRejected,
    cancelled_by=OrderCancelled,
    steps=(
        Step(
            "charge",
            participant="payment",
            action=ChargePayment,
            succeeded=PaymentSucceeded,
            failed=PaymentFailed,
            reached="PAID",
            words=Words("charged", "charge the customer", "refunded", "refund the charge"),
            compensation=RefundPayment,
            compensated=PaymentRefunded,
        ),
        Step(
            "reserve",
            participant="inventory",
            action=ReserveInventory,
            succeeded=InventoryReserved,
            failed=InventoryFailed,
            reached="CONFIRMED",
            words=Words("reserved", "reserve the stock", "released", "release the stock"),
            compensation=ReleaseInventory,
            compensated=InventoryReleased,
        ),
    ),
    pivot="reserve",
)
