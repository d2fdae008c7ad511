"""Each service's HTTP contract against its real database: shapes, 404s and 422s."""

from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import httpx
import pytest

from shared.system import SERVICE_NAMES
from tests.clients.api import SagaClient, new_id

GOOD_LINE = {"sku": "s", "quantity": 1, "unit_price_cents": 100}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"customer_id": "c"},
        {"customer_id": "c", "items": []},
        {"customer_id": "c", "items": [GOOD_LINE] * 51},
        {"customer_id": "", "items": [GOOD_LINE]},
        {"customer_id": "c", "items": [{**GOOD_LINE, "quantity": 0}]},
        {"customer_id": "c", "items": [{**GOOD_LINE, "unit_price_cents": -1}]},
        {"customer_id": "c", "items": [{**GOOD_LINE, "quantity": 1.5}]},
        {"customer_id": "c", "items": [{"sku": "s", "quantity": 1}]},
        {"customer_id": "c", "items": [GOOD_LINE], "coupon": "FREE"},
        {"customer_id": 7, "items": [GOOD_LINE]},
        [GOOD_LINE],
    ],
)
def test_an_invalid_order_is_refused_with_a_readable_422(saga: SagaClient, body: object) -> None:
    response = saga.order.post("/orders", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_a_body_that_is_not_json_is_a_400_and_one_past_64_kib_a_413(saga: SagaClient) -> None:
    # Through the running server (uvicorn), as tests/unit/test_http_answers.py shows each app.
    json = {"Content-Type": "application/json"}
    response = saga.order.post("/orders", content=b"{oops", headers=json)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("the body is not JSON: Expecting property name")
    too_large = saga.order.post("/orders", content=b" " * (64 * 1024 + 1), headers=json)
    assert too_large.status_code == 413


def test_orders_unknown_or_malformed(saga: SagaClient) -> None:
    assert saga.order.get(f"/orders/{uuid4()}").status_code == 404
    assert saga.order.get(f"/orders/{uuid4()}/history").status_code == 404
    assert saga.order.post(f"/orders/{uuid4()}/cancel").status_code == 404
    assert saga.order.get("/orders/not-a-uuid").status_code == 422
    assert saga.order.get("/orders", params={"limit": 1001}).status_code == 422
    assert saga.order.get("/orders", params={"status": "SHIPPED"}).status_code == 422


def test_the_same_idempotency_key_and_body_returns_the_same_order(saga: SagaClient) -> None:
    key = new_id("key")
    body = {"customer_id": new_id("cust"), "items": [GOOD_LINE]}
    first = saga.order.post("/orders", json=body, headers={"Idempotency-Key": key})
    again = saga.order.post("/orders", json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["order_id"] == first.json()["order_id"]
    assert again.headers["Location"] == first.headers["Location"]

    other = saga.order.post(
        "/orders", json={**body, "customer_id": "someone-else"}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]


def test_writes_at_once_each_get_their_own_answer_and_their_own_effect(saga: SagaClient) -> None:
    """Requests that arrive together share a transaction (shared/batching.py): a refusal among
    them is answered as if alone, and every order placed beside it is there."""
    key = new_id("key")
    body = {"customer_id": new_id("cust"), "items": [GOOD_LINE]}
    first = saga.order.post("/orders", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    reused = {**body, "items": [{**GOOD_LINE, "quantity": 2}]}

    def write(index: int) -> tuple[int, httpx.Response]:
        kind = index % 4
        if kind == 0:  # the key again, another body
            return 422, saga.order.post("/orders", json=reused, headers={"Idempotency-Key": key})
        if kind == 1:  # the key again, the same body: the first order
            return 200, saga.order.post("/orders", json=body, headers={"Idempotency-Key": key})
        if kind == 2:
            return 404, saga.order.post(f"/orders/{uuid4()}/cancel")
        return 201, saga.order.post("/orders", json={**body, "customer_id": new_id("cust")})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(write, range(64)))

    for expected, response in answers:
        assert response.status_code == expected, response.text
        if expected == 200:
            assert response.json()["order_id"] == first.json()["order_id"]
    placed = [response.json() for expected, response in answers if expected == 201]
    assert len({order["order_id"] for order in placed}) == 16
    for order in placed:
        stored = saga.order.get(f"/orders/{order['order_id']}")
        assert stored.status_code == 200
        assert stored.json()["customer_id"] == order["customer_id"]


def test_an_order_reads_back_as_spec_shapes_it(saga: SagaClient) -> None:
    order = saga.place_order(new_id("cust"), ("s1", 2, 150), ("s2", 1, 1))
    assert set(order) == {
        "order_id", "customer_id", "items", "total_cents", "status", "reason",
        "created_at", "updated_at", "deadline_at",
    }  # fmt: skip
    assert order["total_cents"] == 301
    listed = saga.order.get("/orders", params={"limit": 5}).json()["orders"]
    assert order["order_id"] in [o["order_id"] for o in listed]


def test_the_order_list_is_newest_first_pages_by_offset_and_filters_by_status(
    saga: SagaClient,
) -> None:
    # Customers no wallet knows: each order is REJECTED (unknown_customer) at payment's step.
    placed = [saga.place_order(new_id("cust"), ("s", 1, 100))["order_id"] for _ in range(3)]
    for order_id in placed:
        saga.wait_for_status(order_id, "REJECTED")

    listed = saga.order.get("/orders", params={"limit": 1000}).json()["orders"]
    created = [order["created_at"] for order in listed]
    assert created == sorted(created, reverse=True), "not newest first"
    # Nothing else placed an order meanwhile (the tests run one at a time).
    assert [order["order_id"] for order in listed[:3]] == placed[::-1]
    page = saga.order.get("/orders", params={"limit": 2, "offset": 1}).json()["orders"]
    assert page == listed[1:3]
    past_the_end = saga.order.get("/orders", params={"offset": 10**9})
    assert past_the_end.json() == {"orders": []}

    rejected = saga.order.get("/orders", params={"status": "REJECTED", "limit": 1000}).json()
    assert {order["status"] for order in rejected["orders"]} == {"REJECTED"}
    assert set(placed) <= {order["order_id"] for order in rejected["orders"]}
    confirmed = saga.order.get("/orders", params={"status": "CONFIRMED", "limit": 1000}).json()
    assert {order["status"] for order in confirmed["orders"]} <= {"CONFIRMED"}
    assert not set(placed) & {order["order_id"] for order in confirmed["orders"]}


def test_accounts_deposits_and_payments(saga: SagaClient) -> None:
    customer = new_id("cust")
    assert saga.payment.get(f"/accounts/{customer}").status_code == 404
    for amount in (0, -5, "ten", None):
        response = saga.payment.post(
            f"/accounts/{customer}/deposits", json={"amount_cents": amount}
        )
        assert response.status_code == 422, amount
    assert saga.payment.post(
        f"/accounts/{customer}/deposits", json={"amount_cents": 70}
    ).json() == {
        "customer_id": customer,
        "balance_cents": 70,
    }
    saga.payment.post(f"/accounts/{customer}/deposits", json={"amount_cents": 30})
    assert saga.balance(customer) == 100
    order_id = str(uuid4())
    assert saga.payments(order_id) == {"order_id": order_id, "charges": [], "refunds": []}
    assert saga.payment.get("/payments").status_code == 422
    assert saga.payment.get("/payments", params={"order_id": "nope"}).status_code == 422


def test_products_restocks_and_reservations(saga: SagaClient) -> None:
    sku = new_id("sku")
    assert saga.inventory.get(f"/products/{sku}").status_code == 404
    for quantity in (0, -1, 2.5):
        response = saga.inventory.post(f"/products/{sku}/restock", json={"quantity": quantity})
        assert response.status_code == 422, quantity
    saga.inventory.post(f"/products/{sku}/restock", json={"quantity": 4})
    saga.inventory.post(f"/products/{sku}/restock", json={"quantity": 6})
    assert saga.product(sku) == {"sku": sku, "available": 10, "reserved": 0}
    order_id = str(uuid4())
    assert saga.reservations(order_id) == []


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_readiness_and_metrics(saga: SagaClient, service: str) -> None:
    client = getattr(saga, service)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "database": "ok", "broker": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "saga_messages_total" in metrics.text
