"""The saga's definition (shared/definition.py) and what is derived from it: each service's
bindings in either style, the handler tables keyed by the class each handler takes, and a
service that refuses to start when its handlers disagree with the definition."""

import re
from dataclasses import replace

import pytest

from services.payment.handlers import HANDLERS as PAYMENT_HANDLERS
from services.payment.handlers import charge_for_order
from shared.commands import ChargePayment, RefundPayment
from shared.definition import ORDER_SAGA, SagaDefinition, Step, Words
from shared.events import (
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    PaymentFailed,
    PaymentRefunded,
)
from shared.service import check_handlers
from shared.system import SERVICES, Mode, declared
from shared.uow import UnitOfWork, handlers


def keys(events: tuple[type[Event], ...]) -> list[str]:
    return [event.routing_key for event in events]


def test_the_order_saga_binds_each_service_as_spec_says() -> None:
    # SPEC.md's bindings, written out once here: the derivation must give exactly these.
    assert {service.name: service.consumes for service in SERVICES} == {
        "order": ("payment.succeeded", "payment.failed", "inventory.reserved", "inventory.failed"),
        "payment": ("order.created", "order.cancelled", "inventory.failed"),
        "inventory": ("payment.succeeded", "order.cancelled"),
    }
    assert {service.name: service.keys(Mode.ORCHESTRATION) for service in SERVICES} == {
        "order": (
            "payment.succeeded", "payment.failed", "payment.refunded",
            "inventory.reserved", "inventory.failed", "inventory.released",
        ),
        "payment": ("payment.charge", "payment.refund"),
        "inventory": ("inventory.reserve", "inventory.release"),
    }  # fmt: skip
    assert ORDER_SAGA.participants == ("order", "payment", "inventory")


def test_a_step_added_to_the_definition_is_bound_in_both_styles() -> None:
    """A fraud screen before the charge, done by payment: payment now screens the new order
    and charges on the screen's success; the order service follows the screen too."""
    screen = Step(
        "screen",
        participant="payment",
        action=ChargePayment,  # any command class serves the derivation
        succeeded=OrderConfirmed,
        failed=PaymentFailed,
        reached="SCREENED",
        words=Words("screened", "screen the order"),
    )
    saga = replace(ORDER_SAGA, steps=(screen, *ORDER_SAGA.steps))
    payment = declared("payment", 8002, saga)
    assert payment.consumes == (
        "order.created", "order.confirmed", "order.cancelled", "inventory.failed",
    )  # fmt: skip
    order = declared("order", 8001, saga)
    assert order.consumes[:2] == ("order.confirmed", "payment.failed")


def test_a_listener_takes_its_events_in_either_style() -> None:
    saga = replace(ORDER_SAGA, listeners={"notifier": (OrderConfirmed, OrderCancelled)})
    notifier = declared("notifier", 8009, saga)
    for mode in Mode:
        assert notifier.keys(mode) == ("order.confirmed", "order.cancelled")
    assert saga.participants[-1] == "notifier"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"pivot": "ship"}, "the pivot 'ship' is none of the steps"),
        (
            {"steps": (replace(ORDER_SAGA.steps[0], compensated=None), ORDER_SAGA.steps[1])},
            "step 'charge': a compensation needs its event",
        ),
        ({"pivot": "charge"}, "step 'reserve' is past the pivot: it cannot be undone"),
    ],
)
def test_a_definition_that_contradicts_itself_is_refused(
    change: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        SagaDefinition(**{**ORDER_SAGA.__dict__, **change})  # type: ignore[arg-type]


def test_a_handler_table_is_keyed_by_the_class_each_handler_takes() -> None:
    assert PAYMENT_HANDLERS["order.created"] is charge_for_order

    async def refund(uow: UnitOfWork, command: RefundPayment) -> str:
        return "refunded"

    assert handlers(refund) == {"payment.refund": refund}


def test_a_handler_table_refuses_a_handler_it_cannot_key() -> None:
    async def untyped(uow, event):  # type: ignore[no-untyped-def]
        return "?"

    async def also_charges(uow: UnitOfWork, event: OrderCreated) -> str:
        return "charged"

    with pytest.raises(TypeError, match=re.escape("untyped must take (uow, message)")):
        handlers(untyped)
    with pytest.raises(TypeError, match=re.escape("both take order.created")):
        handlers(charge_for_order, also_charges)


def test_a_service_whose_handlers_disagree_with_the_definition_refuses_to_start() -> None:
    check_handlers("payment", Mode.CHOREOGRAPHY, PAYMENT_HANDLERS)  # agrees: no complaint
    without_refund = {k: v for k, v in PAYMENT_HANDLERS.items() if k != "order.cancelled"}
    with pytest.raises(
        SystemExit, match=re.escape("order.cancelled is bound to its queue and has")
    ):
        check_handlers("payment", Mode.CHOREOGRAPHY, without_refund)

    async def refunded(uow: UnitOfWork, event: PaymentRefunded) -> str:
        return "?"

    extra = {**PAYMENT_HANDLERS, **handlers(refunded)}
    with pytest.raises(SystemExit, match=re.escape("payment.refunded has a handler and is not")):
        check_handlers("payment", Mode.CHOREOGRAPHY, extra)
    with pytest.raises(SystemExit, match="payment refuses to start in orchestration"):
        check_handlers("payment", Mode.ORCHESTRATION, PAYMENT_HANDLERS)
