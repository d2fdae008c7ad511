"""The broker and a database go away while orders flow; nothing is lost and everything resumes.

Each test runs a stack of its own on a RabbitMQ node or PostgreSQL cluster that the test starts
itself (scripts/stack/instances.py), so it may kill it; the machine's own are never touched.
Each runs on the choreographed saga and on the orchestrated one; the broker's choreographed run
twice, on a node of this machine's RabbitMQ and on RabbitMQ 4 in a container.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scripts.stack import Stack, StackConfig
from scripts.stack.instances import Broker, OwnPostgres, own_broker
from shared.system import Mode
from tests.clients.api import SagaClient
from tests.clients.processes import LogCursor
from tests.conftest import BROKERS, MODES, env_of, stack_on
from tests.polling import wait_until


def own_stack(var_dir: Path, mode: Mode, **config: object) -> Stack:
    return Stack(StackConfig.isolated("sagaoutage", var_dir, env=env_of(mode), mode=mode, **config))


def assert_every_order_confirmed_once(saga: SagaClient, orders: list[str], timeout: float) -> None:
    def all_done() -> bool:
        statuses = [saga.get_order(order_id)["status"] for order_id in orders]
        assert "REJECTED" not in statuses and "CANCELLED" not in statuses, statuses
        return statuses == ["CONFIRMED"] * len(orders)

    wait_until(all_done, timeout, f"{len(orders)} orders to be CONFIRMED")
    for order_id in orders:
        assert len(saga.payments(order_id)["charges"]) == 1
        assert [r["status"] for r in saga.reservations(order_id)] == ["RESERVED"]


# Each broker with the choreographed saga; the orchestrated one on this machine's RabbitMQ.
ON_BROKERS = [
    *(pytest.param(kind.values[0], Mode.CHOREOGRAPHY, id=f"{kind.id}-choreography",
                   marks=kind.marks) for kind in BROKERS),
    pytest.param("local", Mode.ORCHESTRATION, id="local-rabbitmq-orchestration"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "mode"), ON_BROKERS)
def test_a_broker_killed_and_restarted_under_load_loses_nothing(
    tmp_path: Path, kind: str, mode: Mode
) -> None:
    rabbit = own_broker(kind, tmp_path / "rabbitmq")
    rabbit.start()
    try:
        with (
            stack_on(rabbit, tmp_path / "stack", "sagaoutage", mode) as stack,
            SagaClient(stack) as saga,
        ):
            _broker_restart_under_load(stack, saga, rabbit)
    finally:
        rabbit.stop()


def _broker_restart_under_load(stack: Stack, saga: SagaClient, rabbit: Broker) -> None:
    customer, sku = saga.funded_customer(1_000_000), saga.stocked_sku(1_000)
    orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(15)]

    rabbit.kill(signal.SIGKILL)
    # The broker is gone, the API is not: orders keep coming in, their events wait in
    # the outbox.
    orders += [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(15)]
    assert all(saga.get_order(order_id)["status"] != "CONFIRMED" for order_id in orders[15:])
    wait_until(
        lambda: httpx.get(f"{stack.config.base_url('payment')}/readyz").status_code == 503,
        what="payment to report the broker unreachable",
    )
    rabbit.start()
    orders += [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(15)]

    # Every relay published its backlog and every consumer came back to consuming.
    assert_every_order_confirmed_once(saga, orders, timeout=90)
    assert saga.balance(customer) == 1_000_000 - 45 * 100
    assert saga.product(sku) == {"sku": sku, "available": 1_000 - 45, "reserved": 45}
    stack.wait_ready(timeout=30)


@pytest.mark.parametrize("mode", MODES)
def test_a_database_outage_delays_a_service_but_loses_nothing(tmp_path: Path, mode: Mode) -> None:
    postgres = OwnPostgres()
    postgres.start()
    try:
        with (
            own_stack(
                tmp_path / "stack", mode, pg_ports={"payment": postgres.port}
            ).running() as stack,
            SagaClient(stack) as saga,
        ):
            _database_outage_under_load(stack, saga, postgres)
    finally:
        postgres.remove()


def _database_outage_under_load(stack: Stack, saga: SagaClient, postgres: OwnPostgres) -> None:
    customer, sku = saga.funded_customer(1_000_000), saga.stocked_sku(1_000)
    orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(5)]
    assert_every_order_confirmed_once(saga, orders, timeout=30)

    payment_log = LogCursor(stack, "payment")
    postgres.kill(signal.SIGKILL)
    outage_started = time.monotonic()
    orders += [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(10)]
    wait_until(lambda: saga.payment.get("/readyz").status_code == 503, what="payment not ready")
    assert saga.payment.get("/readyz").json()["database"].startswith("unreachable")
    deposit = saga.payment.post(f"/accounts/{customer}/deposits", json={"amount_cents": 1})
    assert deposit.status_code == 503
    assert deposit.json() == {"detail": "database unavailable, try again"}
    # The consumer keeps the messages waiting, attempt after attempt, none spent.
    payment_log.wait_for(f"database unavailable, {saga.charge_request[0]} waits", count=10)
    while time.monotonic() - outage_started < 5:
        time.sleep(0.1)

    postgres.start()
    assert_every_order_confirmed_once(saga, orders, timeout=60)
    wait_until(lambda: saga.payment.get("/readyz").status_code == 200, what="payment ready")
    assert saga.balance(customer) == 1_000_000 - 15 * 100
    assert "dead-lettered" not in payment_log.read()
    listing = subprocess.run(
        [sys.executable, "-m", "scripts.ops.dlq", "--amqp-url", stack.config.amqp_url,
         "--mode", stack.config.mode, "list", "payment"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "empty" in listing.stdout
