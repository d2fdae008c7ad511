"""The orchestrator's step table: given where a saga is and what just happened, where it goes,
what the order becomes and which commands go out. Pure: no I/O, so every path is tested alone
(tests/unit/test_saga_steps.py, with hypothesis); services/order/orchestrator.py persists it.

A saga is RUNNING through its steps (charge, then reserve), COMPENSATING while it waits for the
replies to its refund and release, and ends COMPLETED (the order CONFIRMED) or COMPENSATED
(nothing charged or held). A compensation is sent again until its reply comes; after
MAX_SENDS sends the saga is NEEDS_ATTENTION, for a person, and a reply can still finish it.
"""

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, Literal

from services.order.state import Status
from shared.events import (
    Event,
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


class Step(StrEnum):
    CHARGE = "charge"  # ChargePayment sent, its reply awaited
    RESERVE = "reserve"  # ReserveInventory sent
    COMPENSATE = "compensate"  # RefundPayment and/or ReleaseInventory sent (see `awaiting`)
    DONE = "done"


class Send(StrEnum):
    """A command the orchestrator sends (shared/commands.py)."""

    CHARGE = "charge"
    RESERVE = "reserve"
    REFUND = "refund"
    RELEASE = "release"


# What the orchestrator reacts to: the participants' replies, by event class (those the saga's
# definition lists, shared/definition.py), and its own timers and the customer.
CANCELLED: Final = (
    "cancelled"  # the order was cancelled (deadline or customer), in this transaction
)
RESEND: Final = "resend"  # a compensation's reply is overdue
Happened = type[Event] | Literal["cancelled", "resend"]

# A compensation's reply, and the compensation it answers.
ANSWERED_BY: dict[Happened, Send] = {
    PaymentRefunded: Send.REFUND,
    PaymentFailed: Send.REFUND,  # never charged, and now never will be
    InventoryReleased: Send.RELEASE,
    InventoryFailed: Send.RELEASE,  # never reserved, and now never will be
}
# A success, and what undoes it when it comes after the saga gave up on it.
UNDONE_BY: dict[Happened, Send] = {PaymentSucceeded: Send.REFUND, InventoryReserved: Send.RELEASE}

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


START = Saga(SagaStatus.RUNNING, Step.CHARGE)


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
    if saga.step is Step.CHARGE:
        if happened is PaymentSucceeded:
            return Decision(replace(saga, step=Step.RESERVE), (Send.RESERVE,), Status.PAID)
        if happened is PaymentFailed:
            ended = replace(saga, status=SagaStatus.COMPENSATED, step=Step.DONE)
            return Decision(ended, order=Status.REJECTED, reason=reason, note="nothing to undo")
        if happened == CANCELLED:
            # Its charge may be on its way: the refund is sent either way, and payment answers
            # it, refunded or never charged (and then never charges).
            return _compensate(saga, {Send.REFUND}, "order_cancelled")
    if saga.step is Step.RESERVE:
        if happened is InventoryReserved:
            done = replace(saga, status=SagaStatus.COMPLETED, step=Step.DONE)
            return Decision(done, order=Status.CONFIRMED)
        if happened is InventoryFailed:
            decision = _compensate(saga, {Send.REFUND}, reason or "inventory_failed")
            return replace(decision, order=Status.REJECTED, reason=reason)
        if happened == CANCELLED:
            return _compensate(saga, {Send.REFUND, Send.RELEASE}, "order_cancelled")
    return _unchanged(saga, happened)


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
