"""A broker resource alarm under load: RabbitMQ blocks every connection that publishes. The
relays neither hang nor mark anything, the APIs keep taking orders, and everything flows once
the alarm clears. On a RabbitMQ node of the test's own (scripts/chaos/alarms.py raises the
alarm with rabbitmqctl) of this machine's RabbitMQ 3.10; RabbitMQ 4 meets its alarms in the
compose stack's chaos (tests/compose/test_chaos.py)."""

from pathlib import Path

import pytest

from scripts.chaos.alarms import alarms_in_effect, clear_alarm, raise_alarm
from scripts.ops.check import check, snapshot
from scripts.stack.instances import own_broker
from shared.system import Mode
from tests.clients.api import SagaClient
from tests.clients.database import sql
from tests.clients.processes import LogCursor
from tests.conftest import stack_on
from tests.e2e.test_outages import assert_every_order_confirmed_once
from tests.polling import wait_until


@pytest.mark.parametrize(
    ("alarm", "mode"),
    [("memory", Mode.CHOREOGRAPHY), ("disk", Mode.CHOREOGRAPHY), ("memory", Mode.ORCHESTRATION)],
    ids=["memory-choreography", "disk-choreography", "memory-orchestration"],
)
def test_an_alarm_blocks_publishing_marks_nothing_and_everything_flows_once_cleared(
    tmp_path: Path, alarm: str, mode: Mode
) -> None:
    rabbit = own_broker("local", tmp_path / "rabbitmq")
    rabbit.start()
    try:
        with (
            stack_on(rabbit, tmp_path / "stack", "sagaalarm", mode) as stack,
            SagaClient(stack) as saga,
        ):
            customer, sku = saga.funded_customer(1_000_000), saga.stocked_sku(1_000)
            orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(5)]
            assert_every_order_confirmed_once(saga, orders, timeout=30)
            relay_log = LogCursor(stack, "order-relay")

            raise_alarm(rabbit.rabbitmqctl, alarm)
            wait_until(lambda: alarms_in_effect(rabbit.rabbitmqctl), 30, f"a {alarm} alarm")
            # The APIs take orders; their events wait in the outbox.
            blocked = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(10)]
            # The relay's publishes meet their bound (10 s) and it starts over: it does not
            # hang, and marks nothing.
            relay_log.wait_for("publishes timed out; reconnecting", timeout=30)
            assert stack.is_running("order-relay")
            pending = sql(
                stack, "order",
                "SELECT count(*) FROM outbox WHERE published_at IS NULL "
                "AND body->>'correlation_id' = ANY(%s)", blocked,
            )  # fmt: skip
            assert pending == [(10 * len(saga.placed),)]  # each order's first messages
            assert {saga.get_order(order_id)["status"] for order_id in blocked} == {"PENDING"}

            clear_alarm(rabbit.rabbitmqctl, alarm)
            wait_until(lambda: not alarms_in_effect(rabbit.rabbitmqctl), 30, "the alarm to clear")
            orders += blocked
            orders += [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(5)]
            assert_every_order_confirmed_once(saga, orders, timeout=90)
            assert saga.balance(customer) == 1_000_000 - 20 * 100
            broken = {i.name: i.violations for i in check(snapshot(stack.config)) if i.violations}
            assert not broken, broken
    finally:
        rabbit.stop()
