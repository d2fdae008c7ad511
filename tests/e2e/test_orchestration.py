"""The same saga, orchestrated (SPEC.md, "Orchestration mode"): the order service's orchestrator
sends commands, payment and inventory answer, and every outcome ends as in choreography, with
the saga instance COMPLETED or COMPENSATED beside its order."""

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scripts.ops.check import Invariant, check, snapshot
from scripts.stack import Stack
from shared.audit import read_audit
from shared.broker import connect
from shared.system import Mode
from tests.clients.api import SagaClient
from tests.clients.processes import LogCursor
from tests.polling import eventually, wait_until

pytestmark = pytest.mark.only_in(Mode.ORCHESTRATION)


def saga_of(client: SagaClient[Stack], order_id: str) -> dict[str, Any]:
    response = client.order.get(f"/sagas/{order_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_saga(
    client: SagaClient[Stack], order_id: str, status: str, timeout: float = 15.0
) -> dict[str, Any]:
    return wait_until(
        lambda: s if (s := saga_of(client, order_id))["status"] == status else None,
        timeout,
        f"saga {order_id} to be {status}",
    )


def steps(instance: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    return [(t["to_status"], t["to_step"], t["sent"]) for t in instance["history"]]


def test_a_funded_order_completes_through_commands(saga: SagaClient[Stack]) -> None:
    customer = saga.funded_customer(10_000)
    shirt = saga.stocked_sku(5)

    order = saga.place_order(customer, (shirt, 2, 1_500))
    assert saga_of(saga, order["order_id"])["status"] in ("RUNNING", "COMPLETED")
    saga.wait_for_status(order["order_id"], "CONFIRMED")

    instance = wait_for_saga(saga, order["order_id"], "COMPLETED")
    assert steps(instance) == [
        ("RUNNING", "charge", ["charge"]),
        ("RUNNING", "reserve", ["reserve"]),
        ("COMPLETED", "done", []),
    ]
    assert instance["awaiting"] == [] and instance["sends"] == 0
    assert saga.history(order["order_id"]) == ["PENDING", "PAID", "CONFIRMED"]
    assert saga.balance(customer) == 7_000
    assert saga.product(shirt) == {"sku": shirt, "available": 3, "reserved": 2}


async def test_commands_and_replies_are_in_the_audit_stream_in_causal_order(
    saga: SagaClient[Stack],
) -> None:
    customer = saga.funded_customer(1_000)
    order = saga.place_order(customer, (saga.stocked_sku(1), 1, 400))
    order_id = order["order_id"]
    await asyncio.to_thread(saga.wait_for_status, order_id, "CONFIRMED")

    async def saga_in_audit() -> list[str] | None:
        async with await connect(saga.stack.config.amqp_url) as connection:
            messages = await read_audit(connection, idle_seconds=0.3)
        types = [m.type or "" for m in messages if m.correlation_id == order_id]
        return types if "OrderConfirmed" in types else None

    assert await eventually(saga_in_audit, 15, "the saga in the audit stream") == [
        "OrderCreated",
        "ChargePayment",
        "PaymentSucceeded",
        "ReserveInventory",
        "InventoryReserved",
        "OrderConfirmed",
    ]


def test_a_declined_payment_rejects_with_nothing_to_undo(saga: SagaClient[Stack]) -> None:
    customer = saga.funded_customer(100)
    order = saga.place_order(customer, (saga.stocked_sku(5), 1, 500))

    rejected = saga.wait_for_status(order["order_id"], "REJECTED")
    assert rejected["reason"] == "insufficient_funds"
    instance = wait_for_saga(saga, order["order_id"], "COMPENSATED")
    assert steps(instance)[-1] == ("COMPENSATED", "done", [])
    assert saga.payments(order["order_id"])["charges"] == []
    assert saga.balance(customer) == 100


def test_out_of_stock_rejects_and_the_orchestrator_refunds(
    saga: SagaClient[Stack],
) -> None:
    customer = saga.funded_customer(5_000)
    sku = saga.stocked_sku(1)
    order = saga.place_order(customer, (sku, 2, 1_000))

    rejected = saga.wait_for_status(order["order_id"], "REJECTED")
    assert rejected["reason"] == "out_of_stock"
    instance = wait_for_saga(saga, order["order_id"], "COMPENSATED")
    assert ("COMPENSATING", "compensate", ["refund"]) in steps(instance)
    payments = saga.payments(order["order_id"])
    assert [r["amount_cents"] for r in payments["refunds"]] == [2_000]
    assert payments["refunds"][0]["reason"] == "out_of_stock"
    assert saga.balance(customer) == 5_000
    assert saga.product(sku)["available"] == 1


def test_an_orchestrator_killed_between_steps_goes_on_after_restart(
    saga: SagaClient[Stack],
) -> None:
    stack = saga.stack
    customer = saga.funded_customer(3_000)
    sku = saga.stocked_sku(3)
    order = saga.place_order(customer, (sku, 1, 1_000))
    stack.kill("order")  # ChargePayment is in the outbox; its reply will wait in order.events
    try:
        wait_until(lambda: saga.payments(order["order_id"])["charges"], 15, "the charge")
    finally:
        stack.start("order")
        stack.wait_ready("order")

    saga.wait_for_status(order["order_id"], "CONFIRMED")
    instance = wait_for_saga(saga, order["order_id"], "COMPLETED")
    assert [step for _, step, _ in steps(instance)] == ["charge", "reserve", "done"]


@contextlib.contextmanager
def awaiting_the_release(saga: SagaClient[Stack]) -> Iterator[tuple[str, str, str]]:
    """With inventory stopped for the block: a saga cancelled at its reserve step, its refund
    answered, its release sent and waiting; (customer, sku, order_id)."""
    stack = saga.stack
    customer, sku = saga.funded_customer(4_000), saga.stocked_sku(2)
    stack.stop("inventory")  # the saga waits at its reserve step
    try:
        order_id = saga.place_order(customer, (sku, 2, 1_000))["order_id"]
        wait_until(lambda: saga_of(saga, order_id)["step"] == "reserve", 15, "the reserve step")
        cancelled = saga.order.post(f"/orders/{order_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        # The refund is answered; the release waits for inventory, sent again and again.
        instance = wait_until(
            lambda: s if (s := saga_of(saga, order_id))["awaiting"] == ["release"] else None,
            15,
            "the refund's reply",
        )
        assert instance["status"] == "COMPENSATING"
        assert saga.balance(customer) == 4_000
        yield customer, sku, order_id
    finally:
        stack.start("inventory")
        stack.wait_ready("inventory")


def assert_compensated_holding_nothing(saga: SagaClient[Stack], order_id: str, sku: str) -> None:
    """Inventory back finds the reserve and the releases queued and takes them in whichever
    order: reserved then released, or released first (never reserved, and now never will be).
    The first release's reply finishes the saga."""
    instance = wait_for_saga(saga, order_id, "COMPENSATED", timeout=30)
    assert instance["awaiting"] == []
    assert saga.get_order(order_id)["status"] == "CANCELLED"
    assert saga.product(sku) == {"sku": sku, "available": 2, "reserved": 0}
    assert all(r["status"] == "RELEASED" for r in saga.reservations(order_id))


def test_a_cancel_compensates_an_unanswered_release_needs_attention_then_finishes(
    saga: SagaClient[Stack],
) -> None:
    stack = saga.stack
    order_log = LogCursor(stack, "order")
    with awaiting_the_release(saga) as (_, sku, order_id):
        stuck = wait_for_saga(saga, order_id, "NEEDS_ATTENTION", timeout=40)
        assert stuck["sends"] == 8
        order_log.wait_for("needs attention")
        # The gauge is read from the database at the reaper's next pass.
        wait_until(lambda: _needing_attention(stack) >= 1, 10, "saga_sagas_needing_attention")
    assert_compensated_holding_nothing(saga, order_id, sku)


def test_a_compensating_saga_is_resumed_by_a_restarted_orchestrator(
    saga: SagaClient[Stack],
) -> None:
    stack = saga.stack
    with awaiting_the_release(saga) as (customer, sku, order_id):
        stack.kill("order")  # SIGKILL, COMPENSATING: only its row knows what is awaited
        order_log = LogCursor(stack, "order")
        stack.start("order")
        stack.wait_ready("order")
        # The new process takes the saga's timer from its row: it sends the release again, or,
        # its sends spent while the process was down, hands the saga to a person.
        order_log.wait_for(f"order {order_id[:8]} | compensation unanswered: saga ")
        assert saga_of(saga, order_id)["status"] in ("COMPENSATING", "NEEDS_ATTENTION")
    assert_compensated_holding_nothing(saga, order_id, sku)
    assert saga.balance(customer) == 4_000


def test_an_order_placed_without_a_saga_is_404_on_sagas(saga: SagaClient[Stack]) -> None:
    response = saga.order.get("/sagas/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert "no saga" in response.json()["detail"]


def test_the_orchestrated_stack_holds_every_invariant(saga: SagaClient[Stack]) -> None:
    config = saga.stack.config
    last: list[Invariant] = []

    def held() -> list[Invariant] | None:
        last[:] = check(snapshot(config))
        return None if any(i.violations for i in last) else last

    try:
        invariants = wait_until(held, 30, "the orchestrated stack to go quiet")
    except AssertionError as timeout:
        broken = [(i.name, i.violations[:5]) for i in last if i.violations]
        raise AssertionError(f"violations: {broken}") from timeout
    [sagas] = [i for i in invariants if i.name.startswith("6.")]
    assert sagas.checked >= 6


def _needing_attention(stack: Stack) -> float:
    text = httpx.get(f"{stack.config.base_url('order')}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("saga_sagas_needing_attention "):
            return float(line.split()[1])
    raise AssertionError("no saga_sagas_needing_attention on order's /metrics")
