"""The services' HTTP APIs (SPEC.md, "HTTP"), through asserting helpers."""

import asyncio
import uuid
from typing import Any, Generic, Self, TypeVar

import httpx

from services.order.state import TERMINAL
from shared.system import Mode
from tests.clients import Reachable
from tests.polling import wait_until


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


StackT = TypeVar("StackT", bound=Reachable)


class SagaClient(Generic[StackT]):
    """The three services' APIs of one stack: the no-Docker `Stack` or the compose stack."""

    def __init__(self, stack: StackT) -> None:
        self.stack = stack
        urls = stack.config.base_urls()
        self.order = httpx.Client(base_url=urls["order"], timeout=10)
        self.payment = httpx.Client(base_url=urls["payment"], timeout=10)
        self.inventory = httpx.Client(base_url=urls["inventory"], timeout=10)

    def __enter__(self) -> Self:
        return self

    @property
    def orchestrated(self) -> bool:
        return self.stack.config.mode is Mode.ORCHESTRATION

    @property
    def charge_request(self) -> tuple[str, str]:
        """What payment charges for, type and routing key: the OrderCreated it hears in
        choreography, the ChargePayment the orchestrator sends it."""
        return (
            ("ChargePayment", "payment.charge")
            if self.orchestrated
            else ("OrderCreated", "order.created")
        )

    @property
    def reserve_request(self) -> str:
        """What inventory reserves for: the PaymentSucceeded it hears, or ReserveInventory."""
        return "ReserveInventory" if self.orchestrated else "PaymentSucceeded"

    @property
    def placed(self) -> list[str]:
        """What a new order writes to its outbox: the event, and orchestrated its first command."""
        return ["OrderCreated", "ChargePayment"] if self.orchestrated else ["OrderCreated"]

    def __exit__(self, *exc: object) -> None:
        for client in (self.order, self.payment, self.inventory):
            client.close()

    # -- set-up ---------------------------------------------------------------------------

    def funded_customer(self, cents: int) -> str:
        customer = new_id("cust")
        response = self.payment.post(f"/accounts/{customer}/deposits", json={"amount_cents": cents})
        assert response.status_code == 201, response.text
        return customer

    def stocked_sku(self, units: int) -> str:
        sku = new_id("sku")
        response = self.inventory.post(f"/products/{sku}/restock", json={"quantity": units})
        assert response.status_code == 201, response.text
        return sku

    # -- orders ---------------------------------------------------------------------------

    def place_order(
        self, customer: str, *lines: tuple[str, int, int], **headers: str
    ) -> dict[str, Any]:
        items = [
            {"sku": sku, "quantity": qty, "unit_price_cents": price} for sku, qty, price in lines
        ]
        response = self.order.post(
            "/orders", json={"customer_id": customer, "items": items}, headers=headers
        )
        assert response.status_code == 201, response.text
        assert response.headers["Location"] == f"/orders/{response.json()['order_id']}"
        return response.json()

    def get_order(self, order_id: str) -> dict[str, Any]:
        response = self.order.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for_status(self, order_id: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
        order = wait_until(
            lambda: o if (o := self.get_order(order_id))["status"] in TERMINAL | {status} else None,
            timeout,
            f"order {order_id} to reach {status}",
        )
        assert order["status"] == status, (
            f"order {order_id} is {order['status']} ({order['reason']})"
        )
        return order

    def history(self, order_id: str) -> list[str]:
        response = self.order.get(f"/orders/{order_id}/history")
        assert response.status_code == 200, response.text
        return [t["to_status"] for t in response.json()["transitions"]]

    # -- the other services' views ---------------------------------------------------------

    def balance(self, customer: str) -> int:
        response = self.payment.get(f"/accounts/{customer}")
        assert response.status_code == 200, response.text
        return int(response.json()["balance_cents"])

    def payments(self, order_id: str) -> dict[str, Any]:
        response = self.payment.get("/payments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return response.json()

    def product(self, sku: str) -> dict[str, Any]:
        response = self.inventory.get(f"/products/{sku}")
        assert response.status_code == 200, response.text
        return response.json()

    def reservations(self, order_id: str) -> list[dict[str, Any]]:
        response = self.inventory.get("/reservations", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return response.json()["reservations"]


async def post_orders(
    stack: Reachable, orders: list[tuple[str, list[tuple[str, int, int]]]]
) -> list[str]:
    """POST every (customer, [(sku, quantity, unit_price_cents)]) at once; return the order ids."""
    async with httpx.AsyncClient(base_url=stack.config.base_url("order"), timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/orders",
                    json={
                        "customer_id": customer,
                        "items": [
                            {"sku": sku, "quantity": quantity, "unit_price_cents": price}
                            for sku, quantity, price in lines
                        ],
                    },
                )
                for customer, lines in orders
            )
        )
    assert [response.status_code for response in responses] == [201] * len(orders)
    return [response.json()["order_id"] for response in responses]
