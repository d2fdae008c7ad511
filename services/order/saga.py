"""The orchestrator's step table: given where a saga is and what just happened, where it goes,
what the order becomes and which commands go out, read from the saga's definition
(shared/definition.py). Pure: no I/O, so every path is tested alone (tests/unit/
test_saga_steps.py, with hypothesis); services/order/orchestrator.py persists it.

A saga is RUNNING through its steps in order (charge, then reserve): a step's success sends
the next one's command, its failure compensates the steps before it, a cancel compensates
those and the one under way. It is COMPENSATING while it waits for the replies to its
compensations (refund, release), and ends COMPLETED (the order CONFIRMED) or COMPENSATED
(nothing charged or held). A compensation is sent again until its reply comes; after
MAX_SENDS sends the saga is NEEDS_ATTENTION, for a person, and a reply can still finish it.
"""

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, Literal

from services.order.state import Status
from shared.commands import Command
from shared.definition import ORDER_SAGA
from shared.definition import Step as DefinedStep
from shared.events import Event


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


class Step(StrEnum):
    """Where a RUNNING saga is: one of the definition's steps (shared/definition.py), its
    command sent and its reply awaited; then compensating, or done."""

    CHARGE = "charge"
    RESERVE = "reserve"
    COMPENSATE = "compensate"  # its compensations sent (see `awaiting`)
    DONE = "done"


class Send(StrEnum):
    """A command the orchestrator sends (shared/commands.py): the verb of its routing key."""

    CHARGE = "charge"
    RESERVE = "reserve"
    REFUND = "refund"
    RELEASE = "release"


# What the orchestrator reacts to: the participants' replies, by event class (those the saga's
# definition lists), and its own timers and the customer.
# The order was cancelled (deadline or customer), in this transaction.
CANCELLED: Final = "cancelled"
RESEND: Final = "resend"  # a compensation's reply is overdue
Happened = type[Event] | Literal["cancelled", "resend"]

STEPS = ORDER_SAGA.steps
POSITION = {step.name: index for index, step in enumerate(STEPS)}


def send_of(command: type[Command]) -> Send:
    return Send(command.routing_key.rpartition(".")[2])


# What each command is, by what is sent.
COMMANDS: dict[Send, type[Command]] = {
    send_of(command): command
    for step in STEPS
    for command in (step.action, step.compensation)
    if command is not None
}
# A compensation's reply, and the compensation it answers: the step undone, or its failure
# (never done, and now never will be).
ANSWERED_BY: dict[Happened, Send] = {
    event: send_of(step.compensation)
    for step in STEPS
    if step.compensation is not None and step.compensated is not None
    for event in (step.compensated, step.failed)
}
# A success, and what undoes it when it comes after the saga gave up on it.
UNDONE_BY: dict[Happened, Send] = {
    step.succeeded: send_of(step.compensation) for step in STEPS if step.compensation is not None
}
_declared = {step.name for step in STEPS} | {Step.COMPENSATE, Step.DONE}
if {*Step} != _declared or {*Send} != set(COMMANDS):
    raise ValueError(
        f"services/order/saga.py names steps {sorted(Step)} and commands {sorted(Send)}; the "
        f"saga's definition has {sorted(_declared)} and {sorted(COMMANDS)}"
    )
if unknown := [step.reached for step in STEPS if step.reached not in {*Status}]:
    raise ValueError(f"the saga's definition reaches {unknown}, which no order status is")

# A compensation is sent this many times, in all, before the saga needs a person.
MAX_SENDS = 8
ACTIVE = frozenset({SagaStatus.RUNNING, SagaStatus.COMPENSATING})


@dataclass(frozen=True)
class Saga:
    status: SagaStatus
    step: Step
    awaiting: frozenset[Send] = frozenset()  # compensations sent and not yet answered
    sends: int = 0  # how many times the compensations were sent
    reason: str | None = None  # why it compensates: the refund's and release's reason


START = Saga(SagaStatus.RUNNING, Step(STEPS[0].name))
FIRST = send_of(STEPS[0].action)  # what a new saga sends


@dataclass(frozen=True)
class Decision:
    saga: Saga
    send: tuple[Send, ...] = ()
    order: Status | None = None  # where the order moves, if anywhere
    reason: str | None = None  # the order's reason (REJECTED)
    note: str = ""  # what happened, for the log line
    changed: bool = field(default=True)


def decide(saga: Saga, happened: Happened, reason: str | None = None) -> Decision:
    """The step table. `happened`: a reply's event class, CANCELLED or RESEND; `reason`: the
    reply's or the cancel's."""
    if saga.status is SagaStatus.RUNNING:
        return _running(saga, happened, reason)
    if saga.status in (SagaStatus.COMPENSATING, SagaStatus.NEEDS_ATTENTION):
        return _compensating(saga, happened)
    return _ended(saga, happened)


def _running(saga: Saga, happened: Happened, reason: str | None) -> Decision:
    index = POSITION[saga.step]
    step = STEPS[index]
    if happened is step.succeeded:
        reached = Status(step.reached)
        if index + 1 == len(STEPS):
            done = replace(saga, status=SagaStatus.COMPLETED, step=Step.DONE)
            return Decision(done, order=reached)
        following = STEPS[index + 1]
        return Decision(
            replace(saga, step=Step(following.name)), (send_of(following.action),), reached
        )
    if happened is step.failed:
        undo = _compensations(STEPS[:index])
        if not undo:
            ended = replace(saga, status=SagaStatus.COMPENSATED, step=Step.DONE)
            return Decision(ended, order=Status.REJECTED, reason=reason, note="nothing to undo")
        decision = _compensate(saga, undo, reason or step.failed_fact)
        return replace(decision, order=Status.REJECTED, reason=reason)
    if happened == CANCELLED:
        # The step under way may be done on its way: its compensation is sent either way, and
        # its participant answers it, undone or never done (and then never does it).
        return _compensate(saga, _compensations(STEPS[: index + 1]), "order_cancelled")
    return _unchanged(saga, happened)


def _compensations(steps: tuple[DefinedStep, ...]) -> set[Send]:
    return {send_of(step.compensation) for step in steps if step.compensation is not None}


def _compensating(saga: Saga, happened: Happened) -> Decision:
    answered = ANSWERED_BY.get(happened)
    if answered in saga.awaiting:
        left = saga.awaiting - {answered}
        if left:
            return Decision(replace(saga, awaiting=left))
        compensated = replace(saga, status=SagaStatus.COMPENSATED, step=Step.DONE, awaiting=left)
        return Decision(compensated)
    if happened == RESEND and saga.status is SagaStatus.COMPENSATING:
        if saga.sends >= MAX_SENDS:
            stuck = replace(saga, status=SagaStatus.NEEDS_ATTENTION)
            return Decision(stuck, note=f"no reply after {saga.sends} sends: needs attention")
        resent = replace(saga, sends=saga.sends + 1)
        return Decision(resent, tuple(sorted(saga.awaiting)), note="sent again")
    return _late(saga, happened)


def _ended(saga: Saga, happened: Happened) -> Decision:
    if saga.status is SagaStatus.COMPLETED:
        return _unchanged(saga, happened)
    return _late(saga, happened)


def _late(saga: Saga, happened: Happened) -> Decision:
    """A success that comes after the saga gave up on it: undo it too."""
    undo = UNDONE_BY.get(happened)
    if undo is None or undo in saga.awaiting:
        return _unchanged(saga, happened)
    return _compensate(saga, saga.awaiting | {undo}, saga.reason or "order_cancelled")


def _compensate(saga: Saga, undo: set[Send] | frozenset[Send], reason: str) -> Decision:
    compensating = Saga(SagaStatus.COMPENSATING, Step.COMPENSATE, frozenset(undo), 1, reason)
    return Decision(compensating, tuple(sorted(undo - saga.awaiting)))


def _unchanged(saga: Saga, happened: Happened) -> Decision:
    return Decision(saga, note=f"ignored, saga is {saga.status} at {saga.step}", changed=False)
