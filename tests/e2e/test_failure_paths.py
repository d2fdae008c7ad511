"""Every way a saga fails ends with the books balanced: declined payments, refunds on inventory
failure, customer cancels and timeouts, each end to end on the running stack."""

import asyncio

import pytest

from scripts.stack import Stack
from scripts.stack.instances import free_port
from shared.system import SERVICE_NAMES, Mode
from tests.clients.api import SagaClient, post_orders
from tests.clients.database import sql
from tests.clients.processes import LogCursor, restarted_with, stopped
from tests.polling import wait_until


def assert_refunded(saga: SagaClient, order_id: str, amount: int, reason: str) -> None:
    payments = wait_until(lambda: (p := saga.payments(order_id))["refunds"] and p, what="a refund")
    [charge] = payments["charges"]
    [refund] = payments["refunds"]
    assert charge["amount_cents"] == refund["amount_cents"] == amount
    assert refund["payment_id"] == charge["payment_id"]
    assert refund["reason"] == reason


def assert_nothing_kept(saga: SagaClient, stack: Stack, order_id: str) -> None:
    """Charges minus refunds is zero, at most one of each, whichever way the events raced.

    Payment remembers a cancellation in the same unit of work that refunds, and once it has,
    no charge can follow: from then on what payment shows is final."""
    remembered = "SELECT 1 FROM cancelled_orders WHERE order_id = %s"
    wait_until(
        lambda: sql(stack, "payment", remembered, order_id), what="payment to learn of the cancel"
    )
    payments = saga.payments(order_id)
    assert len(payments["charges"]) == len(payments["refunds"]) <= 1
    assert sum(c["amount_cents"] for c in payments["charges"]) == sum(
        r["amount_cents"] for r in payments["refunds"]
    )


def assert_nothing_held(
    saga: SagaClient, stack: Stack, order_id: str, sku: str, units: int
) -> None:
    """No stock held for a cancelled order, once inventory's answer is final.

    Inventory remembers a cancellation (OrderCancelled, or orchestrated ReleaseInventory) in the
    unit of work that releases, and once it has, never reserves for the order: the wait is for
    that record, which no state before inventory acted can satisfy."""
    remembered = "SELECT 1 FROM cancelled_orders WHERE order_id = %s"
    wait_until(
        lambda: sql(stack, "inventory", remembered, order_id),
        what="inventory to learn of the cancel",
    )
    assert all(r["status"] == "RELEASED" for r in saga.reservations(order_id))
    assert saga.product(sku) == {"sku": sku, "available": units, "reserved": 0}


def test_insufficient_funds_rejects_the_order_and_charges_nothing(saga: SagaClient) -> None:
    customer, sku = saga.funded_customer(400), saga.stocked_sku(5)
    order = saga.place_order(customer, (sku, 1, 500))
    rejected = saga.wait_for_status(order["order_id"], "REJECTED")
    assert rejected["reason"] == "insufficient_funds"
    assert saga.history(order["order_id"]) == ["PENDING", "REJECTED"]
    assert saga.balance(customer) == 400
    assert saga.payments(order["order_id"])["charges"] == []
    assert saga.reservations(order["order_id"]) == []
    assert saga.product(sku)["available"] == 5


def test_an_unknown_customer_is_rejected(saga: SagaClient) -> None:
    order = saga.place_order("nobody-" + saga.stocked_sku(1), (saga.stocked_sku(1), 1, 1))
    assert saga.wait_for_status(order["order_id"], "REJECTED")["reason"] == "unknown_customer"


def test_out_of_stock_refunds_the_charge_and_reserves_nothing(saga: SagaClient) -> None:
    customer = saga.funded_customer(10_000)
    plenty, scarce = saga.stocked_sku(50), saga.stocked_sku(1)
    logs = {name: LogCursor(saga.stack, name) for name in SERVICE_NAMES}

    order = saga.place_order(customer, (plenty, 3, 500), (scarce, 2, 1_000))
    order_id, short_id = order["order_id"], order["order_id"][:8]
    assert saga.wait_for_status(order_id, "REJECTED")["reason"] == "out_of_stock"
    assert_refunded(saga, order_id, 3_500, "out_of_stock")
    assert saga.balance(customer) == 10_000
    # All lines or none: the line that was in stock was not reserved either.
    assert saga.product(plenty) == {"sku": plenty, "available": 50, "reserved": 0}
    assert saga.product(scarce) == {"sku": scarce, "available": 1, "reserved": 0}
    assert saga.reservations(order_id) == []
    history = saga.history(order_id)
    assert history[0] == "PENDING" and history[-1] == "REJECTED"

    # The story, one line per service, as a person tailing three terminals reads it: the
    # refund heard (choreography) or asked for (orchestration).
    logs["inventory"].wait_for(
        f"order {short_id} | cannot reserve: {scarce} short, 1 available, 2 wanted "
        f"for {saga.reserve_request} -> InventoryFailed"
    )
    refund_cause = "RefundPayment" if saga.orchestrated else "InventoryFailed"
    logs["payment"].wait_for(
        f"order {short_id} | refunded 3500 to {customer} (out_of_stock) "
        f"for {refund_cause} -> PaymentRefunded"
    )
    logs["order"].wait_for(
        "-> REJECTED (out_of_stock), saga COMPENSATING (awaiting refund) for InventoryFailed "
        "-> OrderRejected, RefundPayment"
        if saga.orchestrated
        else "-> REJECTED (out_of_stock) for InventoryFailed -> OrderRejected"
    )


def test_an_unknown_sku_is_rejected_and_refunded(saga: SagaClient) -> None:
    customer = saga.funded_customer(1_000)
    order = saga.place_order(customer, (saga.stocked_sku(5), 1, 100), ("no-such-sku", 1, 100))
    assert saga.wait_for_status(order["order_id"], "REJECTED")["reason"] == "unknown_sku"
    assert_refunded(saga, order["order_id"], 200, "unknown_sku")
    assert saga.balance(customer) == 1_000


def test_a_customer_cancel_while_pending_compensates_whatever_ran(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(5_000), saga.stocked_sku(5)
    with stopped(stack, "payment"):
        order_id = saga.place_order(customer, (sku, 1, 800))["order_id"]
        cancel = saga.order.post(f"/orders/{order_id}/cancel")
        assert cancel.status_code == 202
        assert cancel.json()["status"] == "CANCELLED"
        again = saga.order.post(f"/orders/{order_id}/cancel")
        assert (again.status_code, again.json()["status"]) == (200, "CANCELLED")
    # Payment now finds OrderCreated and OrderCancelled queued and applies them in either
    # order: a charge and its refund, or no charge at all.
    assert_nothing_kept(saga, stack, order_id)
    assert saga.balance(customer) == 5_000
    if saga.orchestrated:
        # The orchestrator cancelled at its charge step: it refunds and never asks inventory,
        # and the saga is COMPENSATED once payment answered.
        wait_until(
            lambda: saga.order.get(f"/sagas/{order_id}").json()["status"] == "COMPENSATED",
            what="the saga to be COMPENSATED",
        )
        assert saga.reservations(order_id) == []
        assert saga.product(sku) == {"sku": sku, "available": 5, "reserved": 0}
    else:
        assert_nothing_held(saga, stack, order_id, sku, 5)
    assert saga.get_order(order_id)["status"] == "CANCELLED"
    assert saga.history(order_id) == ["PENDING", "CANCELLED"]


@pytest.mark.only_in(Mode.CHOREOGRAPHY)  # orchestrated: tests/unit/test_saga_steps.py
def test_a_payment_that_succeeds_after_the_cancel_is_refunded(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(5_000), saga.stocked_sku(5)
    order_log = LogCursor(stack, "order")
    with stopped(stack, "payment"):
        order_id = saga.place_order(customer, (sku, 1, 900))["order_id"]
        assert saga.order.post(f"/orders/{order_id}/cancel").status_code == 202
        # One delivery at a time: OrderCreated is charged before OrderCancelled is seen.
        stack.start("payment", CONSUMER_PREFETCH="1")
        stack.wait_ready("payment")
        assert_refunded(saga, order_id, 900, "order_cancelled")
        order_log.wait_for(
            f"order {order_id[:8]} | ignored, order is CANCELLED for PaymentSucceeded"
        )
        stack.stop("payment")
    assert saga.get_order(order_id)["status"] == "CANCELLED"
    assert saga.balance(customer) == 5_000  # assert_refunded waited for the refund's record
    assert_nothing_held(saga, stack, order_id, sku, 5)


def test_a_confirmed_or_rejected_order_cannot_be_cancelled(saga: SagaClient) -> None:
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(5)
    confirmed = saga.place_order(customer, (sku, 1, 100))["order_id"]
    rejected = saga.place_order(customer, (sku, 1, 5_000))["order_id"]
    saga.wait_for_status(confirmed, "CONFIRMED")
    saga.wait_for_status(rejected, "REJECTED")
    for order_id, status in ((confirmed, "CONFIRMED"), (rejected, "REJECTED")):
        response = saga.order.post(f"/orders/{order_id}/cancel")
        assert response.status_code == 409
        assert status in response.json()["detail"]
        assert saga.get_order(order_id)["status"] == status


def test_the_reaper_cancels_a_paid_order_past_its_deadline_and_everything_is_undone(
    saga: SagaClient, stack: Stack
) -> None:
    customer, sku = saga.funded_customer(3_000), saga.stocked_sku(4)
    with restarted_with(stack, "order", ORDER_DEADLINE_SECONDS="1.5"), stopped(stack, "inventory"):
        order = saga.place_order(customer, (sku, 2, 600))
        order_id = order["order_id"]
        saga.wait_for_status(order_id, "PAID")
        cancelled = saga.wait_for_status(order_id, "CANCELLED", timeout=10)
        assert cancelled["reason"] == "timeout"
        assert_refunded(saga, order_id, 1_200, "order_cancelled")
    # Inventory comes back to PaymentSucceeded and OrderCancelled (orchestrated: the
    # ReserveInventory and ReleaseInventory queued for it), in whichever order.
    assert_nothing_held(saga, stack, order_id, sku, 4)
    assert saga.balance(customer) == 3_000
    assert saga.get_order(order_id)["status"] == "CANCELLED"
    assert saga.history(order_id) == ["PENDING", "PAID", "CANCELLED"]


def test_overdue_sagas_are_visible_until_reaped(saga: SagaClient, stack: Stack) -> None:
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(1)
    with stopped(stack, "payment"):
        with restarted_with(stack, "order", ORDER_DEADLINE_SECONDS="0.5", REAPER_ENABLED="false"):
            order_id = saga.place_order(customer, (sku, 1, 10))["order_id"]

            def listed_overdue() -> bool:
                overdue = saga.order.get("/orders", params={"overdue": "true"}).json()["orders"]
                return order_id in [o["order_id"] for o in overdue]

            wait_until(listed_overdue, what="the order to be listed as overdue")
            wait_until(
                lambda: _gauge(saga.order.get("/metrics").text, "saga_sagas_overdue") >= 1,
                what="the overdue gauge",
            )
            assert saga.get_order(order_id)["status"] == "PENDING"
        # Back to normal, the reaper cancels it at once.
        assert saga.wait_for_status(order_id, "CANCELLED")["reason"] == "timeout"


def test_two_order_processes_reap_each_overdue_order_once(saga: SagaClient, stack: Stack) -> None:
    customer, sku = saga.funded_customer(100_000), saga.stocked_sku(100)
    stack.config.ports["order.2"] = free_port()
    with (
        stopped(stack, "payment"),
        restarted_with(stack, "order", ORDER_DEADLINE_SECONDS="1", REAPER_INTERVAL_SECONDS="0.2"),
    ):
        stack.start("order.2", ORDER_DEADLINE_SECONDS="1", REAPER_INTERVAL_SECONDS="0.2")
        try:
            stack.wait_ready("order.2")
            orders = [saga.place_order(customer, (sku, 1, 10))["order_id"] for _ in range(30)]
            for order_id in orders:
                saga.wait_for_status(order_id, "CANCELLED")
        finally:
            stack.stop("order.2")
    for order_id in orders:
        assert saga.history(order_id) == ["PENDING", "CANCELLED"]
        cancels = sql(
            stack,
            "order",
            "SELECT count(*) FROM outbox WHERE body->>'type' = 'OrderCancelled' "
            "AND body->>'correlation_id' = %s",
            order_id,
        )
        assert cancels == [(1,)]


async def test_contention_ten_units_for_a_hundred_buyers(saga: SagaClient) -> None:
    sku = saga.stocked_sku(10)
    customers = [saga.funded_customer(1_000) for _ in range(100)]
    order_ids = await post_orders(saga.stack, [(c, [(sku, 1, 250)]) for c in customers])

    def outcomes() -> dict[str, int] | None:
        statuses = [saga.get_order(order_id)["status"] for order_id in order_ids]
        if {"PENDING", "PAID"} & set(statuses):
            return None
        return {status: statuses.count(status) for status in set(statuses)}

    assert await asyncio.to_thread(wait_until, outcomes, 60, "every order to end") == {
        "CONFIRMED": 10,
        "REJECTED": 90,
    }
    assert saga.product(sku) == {"sku": sku, "available": 0, "reserved": 10}
    balances = [saga.balance(customer) for customer in customers]
    assert sorted(balances) == [750] * 10 + [1_000] * 90
    for order_id in order_ids:
        order = saga.get_order(order_id)
        payments = saga.payments(order_id)
        if order["status"] == "REJECTED":
            assert order["reason"] == "out_of_stock"
            assert len(payments["charges"]) == len(payments["refunds"]) == 1
        else:
            assert payments["refunds"] == []


def _gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
