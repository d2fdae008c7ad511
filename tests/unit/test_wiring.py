"""The handler tables, the topology and the event schemas agree with each other."""

import pytest

from services.inventory.handlers import HANDLERS as INVENTORY
from services.inventory.handlers import units_per_sku
from services.order.handlers import HANDLERS as ORDER
from services.payment.handlers import HANDLERS as PAYMENT
from shared.events import TYPE_BY_ROUTING_KEY, Item
from shared.faults import Faults, InjectedFault
from shared.system import SERVICES, Service

HANDLERS = {"order": ORDER, "payment": PAYMENT, "inventory": INVENTORY}


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.name)
def test_each_queue_is_bound_to_exactly_the_keys_its_service_handles(service: Service) -> None:
    assert set(HANDLERS[service.name]) == set(service.consumes)
    assert all(key in TYPE_BY_ROUTING_KEY for key in service.consumes)


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
