"""The consistency checker catches real bugs: a clean run passes, and each kind of corruption
(a double charge, a missing refund, an orphan reservation, a stuck order, an unpublished
outbox row) is reported with the order that carries it."""

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from scripts.ops.check import check, snapshot
from scripts.stack import Stack, StackConfig
from tests.clients.api import SagaClient
from tests.clients.database import sql
from tests.clients.invariants import wait_consistent
from tests.conftest import TEST_ENV
from tests.polling import wait_until


@pytest.fixture(scope="module")
def quiet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig.isolated("sagacheck", tmp_path_factory.mktemp("check"), env=TEST_ENV)
    with Stack(config).running() as stack:
        yield stack


def run_check(stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.ops.check", "--prefix", stack.config.database_prefix,
         "--amqp-url", stack.config.amqp_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_clean_system_passes_and_every_corruption_is_named(quiet_stack: Stack) -> None:
    stack = quiet_stack
    with SagaClient(stack) as saga:
        customer, sku, scarce = (
            saga.funded_customer(100_000),
            saga.stocked_sku(100),
            saga.stocked_sku(1),
        )
        confirmed = [saga.place_order(customer, (sku, 1, 500))["order_id"] for _ in range(4)]
        short = saga.place_order(customer, (scarce, 2, 700))["order_id"]
        for order_id in confirmed:
            saga.wait_for_status(order_id, "CONFIRMED")
        saga.wait_for_status(short, "REJECTED")
        wait_until(lambda: saga.payments(short)["refunds"], what="the refund")

    wait_consistent(stack.config, 30, "the system to go quiet")
    passing = run_check(stack)
    assert passing.returncode == 0, passing.stdout
    assert "no violations" in passing.stdout

    double, stuck, unpublished, _ = confirmed
    orphan = str(uuid.uuid4())
    # A double charge (the unique key that prevents it dropped first).
    sql(stack, "payment", "ALTER TABLE charges DROP CONSTRAINT charges_order_id_key")
    sql(
        stack, "payment",
        "INSERT INTO charges (payment_id, order_id, customer_id, amount_cents) "
        "SELECT gen_random_uuid(), order_id, customer_id, amount_cents FROM charges "
        "WHERE order_id = %s",
        double,
    )  # fmt: skip
    # A missing refund, an orphan reservation, a stuck order, an unpublished outbox row.
    sql(stack, "payment", "DELETE FROM refunds WHERE order_id = %s", short)
    sql(
        stack, "inventory",
        "INSERT INTO reservations (reservation_id, order_id, items) VALUES (gen_random_uuid(), %s, "
        "'[{\"sku\": \"ghost\", \"quantity\": 1, \"unit_price_cents\": 1}]')",
        orphan,
    )  # fmt: skip
    sql(stack, "order", "UPDATE orders SET status = 'PAID' WHERE order_id = %s", stuck)
    stack.stop("order-relay")  # or it would publish the row again at once, healing it
    sql(
        stack, "order",
        "UPDATE outbox SET published_at = NULL WHERE body->>'type' = 'OrderConfirmed' "
        "AND body->>'correlation_id' = %s",
        unpublished,
    )  # fmt: skip

    invariants = {i.name.split(".")[0]: i.violations for i in check(snapshot(stack.config))}
    assert [v for v in invariants["1"] if stuck in v] == [f"{stuck}: still PAID"]
    assert any(double in v and "charges [500, 500]" in v for v in invariants["2"]), invariants["2"]
    assert any(short in v and "1 charge(s) of 1400, 0 refund(s) of 0" in v for v in invariants["3"])
    assert any(customer in v for v in invariants["4a"]), invariants["4a"]
    assert any(orphan in v for v in invariants["4c"]), invariants["4c"]
    assert any(unpublished in v and "never published" in v for v in invariants["5"])

    failing = run_check(stack)
    assert failing.returncode == 1
    for order_id in (stuck, double, short, orphan, unpublished):
        assert order_id in failing.stdout
