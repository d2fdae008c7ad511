"""The dashboard's JSON API (SPEC.md, "Dashboard") over sagas this test ran: the list's fields,
its order, its filters and its search; the counts; the stuck sagas."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scripts.stack import Stack
from tests.clients.api import SagaClient
from tests.clients.processes import restarted_with, stopped
from tests.polling import wait_until

# What SPEC.md lists for each saga of `GET /api/sagas`.
SAGA_FIELDS = {"order_id", "status", "customer_id", "total_cents", "started_at", "updated_at"}


@pytest.fixture
def dashboard(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.dashboard_url, timeout=10) as client:
        yield client


def projected(dashboard: httpx.Client, order_id: str, status: str) -> dict[str, Any]:
    """The saga as the dashboard shows it, once it shows `status`."""

    def shown() -> dict[str, Any] | None:
        answer = dashboard.get(f"/api/sagas/{order_id}")
        return (
            answer.json()
            if answer.status_code == 200 and answer.json()["status"] == status
            else None
        )

    return wait_until(shown, 20, f"the dashboard to show {order_id} {status}")


def sagas(dashboard: httpx.Client, **params: str | int) -> list[dict[str, Any]]:
    answer = dashboard.get("/api/sagas", params=params)
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, Any]] = answer.json()["sagas"]
    return listed


def ids_of(rows: list[dict[str, Any]]) -> list[str]:
    return [row["order_id"] for row in rows]


def test_the_saga_list_is_newest_first_filtered_by_status_and_searched(
    saga: SagaClient, dashboard: httpx.Client
) -> None:
    customer, poor = saga.funded_customer(10_000), saga.funded_customer(10)
    sku, scarce = saga.stocked_sku(10), saga.stocked_sku(1)
    # One after the other, so each starts after the one before: the list shows them reversed.
    placed = {
        "CONFIRMED": saga.place_order(customer, (sku, 1, 100))["order_id"],
        "REJECTED": saga.place_order(poor, (sku, 1, 100))["order_id"],  # declined: nothing to undo
        "COMPENSATED": saga.place_order(customer, (scarce, 2, 100))["order_id"],  # refunded
    }
    for status, order_id in placed.items():
        projected(dashboard, order_id, status)
    ours = list(placed.values())

    listed = sagas(dashboard, limit=1000)
    assert all(set(row) == SAGA_FIELDS for row in listed), listed[:1]
    started = [row["started_at"] for row in listed]
    assert started == sorted(started, reverse=True), "not newest first"
    assert [row["order_id"] for row in listed if row["order_id"] in ours] == ours[::-1]
    [confirmed] = [row for row in listed if row["order_id"] == placed["CONFIRMED"]]
    assert (confirmed["customer_id"], confirmed["total_cents"]) == (customer, 100)
    assert [row["order_id"] for row in sagas(dashboard, limit=2)] == ids_of(listed[:2])

    for status, order_id in placed.items():
        chosen = sagas(dashboard, status=status, limit=1000)
        assert {row["status"] for row in chosen} == {status}
        assert {row["order_id"] for row in chosen} & set(ours) == {order_id}

    order_id = placed["COMPENSATED"]
    assert [row["order_id"] for row in sagas(dashboard, q=order_id)] == [order_id]
    by_prefix = sagas(dashboard, q=order_id[:8], limit=1000)
    assert order_id in [row["order_id"] for row in by_prefix]
    assert all(row["order_id"].startswith(order_id[:8]) for row in by_prefix)
    refund = next(
        event for event in dashboard.get(f"/api/sagas/{order_id}").json()["events"]
        if event["type"] == "PaymentRefunded"
    )  # fmt: skip
    assert [row["order_id"] for row in sagas(dashboard, q=refund["message_id"])] == [order_id]
    assert sagas(dashboard, q="0000dead") == []


def test_the_counts_are_those_of_the_sagas_listed(
    saga: SagaClient, dashboard: httpx.Client
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
    order_id = saga.place_order(customer, (sku, 1, 100))["order_id"]
    projected(dashboard, order_id, "CONFIRMED")

    stats = dashboard.get("/api/stats").json()
    assert set(stats["counts"]) == {
        "IN_FLIGHT",
        "CONFIRMED",
        "REJECTED",
        "CANCELLED",
        "COMPENSATED",
    }
    assert stats["counts"]["CONFIRMED"] >= 1
    durations = stats["durations"]["CONFIRMED"]
    assert 0 < durations["p50_ms"] <= durations["p99_ms"], durations
    assert stats["follower"]["broker"] is True and stats["follower"]["next_offset"] > 0
    # In flight now: as many as the list shows (the stack is quiet between tests).
    in_flight = len(sagas(dashboard, status="IN_FLIGHT", limit=1000))
    assert stats["counts"]["IN_FLIGHT"] == in_flight


def test_a_saga_past_its_deadline_is_stuck_until_it_is_reaped(
    saga: SagaClient, stack: Stack, dashboard: httpx.Client
) -> None:
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(1)

    def stuck() -> list[str]:
        answer = dashboard.get("/api/stuck")
        assert answer.status_code == 200, answer.text
        assert all(set(row) == SAGA_FIELDS for row in answer.json()["sagas"])
        return [row["order_id"] for row in answer.json()["sagas"]]

    with stopped(stack, "payment"):
        with restarted_with(stack, "order", ORDER_DEADLINE_SECONDS="0.5", REAPER_ENABLED="false"):
            order_id = saga.place_order(customer, (sku, 1, 10))["order_id"]
            projected(dashboard, order_id, "IN_FLIGHT")
            wait_until(lambda: order_id in stuck(), 10, f"{order_id} listed as stuck")
        # The reaper is back: the order is cancelled, nothing was charged, nothing is stuck.
        saga.wait_for_status(order_id, "CANCELLED")
        projected(dashboard, order_id, "CANCELLED")
        assert order_id not in stuck()
