"""The handler tables, the topology and the event schemas agree with each other."""

import pytest

from services.inventory.handlers import COMMAND_HANDLERS as INVENTORY_COMMANDS
from services.inventory.handlers import HANDLERS as INVENTORY
from services.inventory.handlers import units_per_sku
from services.order.handlers import HANDLERS as ORDER
from services.order.orchestrator import REPLY_HANDLERS
from services.payment.handlers import COMMAND_HANDLERS as PAYMENT_COMMANDS
from services.payment.handlers import HANDLERS as PAYMENT
from shared import topology
from shared.commands import COMMAND_TYPES, MESSAGE_TYPE_BY_ROUTING_KEY, Command
from shared.definition import ORDER_SAGA
from shared.events import TYPE_BY_ROUTING_KEY, Event, Item
from shared.faults import Faults, InjectedFault
from shared.system import ORDER as ORDER_SERVICE
from shared.system import SERVICES, Mode, Service

HANDLERS = {"order": ORDER, "payment": PAYMENT, "inventory": INVENTORY}
# Orchestrated: the orchestrator takes the replies, the participants their commands.
ORCHESTRATED = {
    "order": REPLY_HANDLERS,
    "payment": PAYMENT_COMMANDS,
    "inventory": INVENTORY_COMMANDS,
}


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.name)
def test_each_queue_is_bound_to_exactly_the_keys_its_service_handles(service: Service) -> None:
    assert set(HANDLERS[service.name]) == set(service.consumes)
    assert all(key in TYPE_BY_ROUTING_KEY for key in service.consumes)


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.name)
def test_orchestrated_each_queue_is_bound_to_exactly_the_keys_its_service_handles(
    service: Service,
) -> None:
    keys = service.keys(Mode.ORCHESTRATION)
    assert set(ORCHESTRATED[service.name]) == set(keys)
    kinds = {Command if service.commands else Event}
    assert {MESSAGE_TYPE_BY_ROUTING_KEY[key].__base__ for key in keys} == kinds


def test_the_orchestrator_takes_every_reply_of_the_definition_and_every_command_has_a_taker() -> (
    None
):
    assert {TYPE_BY_ROUTING_KEY[key] for key in ORDER_SERVICE.replies} == set(ORDER_SAGA.replies())
    taken = {key for service in SERVICES for key in service.commands}
    assert taken == {cls.routing_key for cls in COMMAND_TYPES.values()}
    assert {topology.exchange_of(key) for key in taken} == {topology.COMMANDS_EXCHANGE}


def test_queue_names_follow_the_mode() -> None:
    assert topology.work_queue("payment", Mode.ORCHESTRATION) == "payment.commands"
    assert topology.dead_letter_queue("inventory", Mode.ORCHESTRATION) == "inventory.commands.dlq"
    assert topology.work_queue("order", Mode.ORCHESTRATION) == "order.events"
    assert topology.retry_queue("payment", 200, Mode.CHOREOGRAPHY) == "payment.events.retry.200ms"


def test_a_service_never_consumes_its_own_events() -> None:
    for service in SERVICES:
        assert not [key for key in service.consumes if key.startswith(f"{service.name}.")]


def test_units_per_sku_sums_repeated_lines_in_lock_order() -> None:
    items = [
        Item(sku="b", quantity=2, unit_price_cents=1),
        Item(sku="a", quantity=1, unit_price_cents=1),
        Item(sku="b", quantity=3, unit_price_cents=5),
    ]
    assert list(units_per_sku(items).items()) == [("a", 1), ("b", 5)]


def test_an_injected_handler_failure_fails_n_times_then_stops() -> None:
    faults = Faults(fail_handler="charge_for_order:2")
    for _ in range(2):
        with pytest.raises(InjectedFault):
            faults.maybe_fail("charge_for_order")
    faults.maybe_fail("charge_for_order")
    Faults().maybe_fail("charge_for_order")
    Faults(fail_handler="charge_for_order:5").maybe_fail("reserve_stock")
