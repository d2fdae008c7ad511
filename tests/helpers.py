"""Asserting helpers for tests that drive the running stack through SPEC.md's HTTP API.

Each test makes its own random customers, skus and orders, so tests never depend on empty
tables or on each other. Waits poll with a deadline; nothing sleeps blindly.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Self, TypeVar

import aio_pika
import httpx
import psycopg
from aio_pika.abc import AbstractExchange

from scripts.stack import Stack
from shared.envelope import Envelope, wrap
from shared.events import Event

T = TypeVar("T")
TERMINAL = {"CONFIRMED", "REJECTED", "CANCELLED"}


def wait_until(check: Callable[[], T | None], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class SagaClient:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        urls = {
            service: stack.config.base_url(service) for service in ("order", "payment", "inventory")
        }
        self.order = httpx.Client(base_url=urls["order"], timeout=10)
        self.payment = httpx.Client(base_url=urls["payment"], timeout=10)
        self.inventory = httpx.Client(base_url=urls["inventory"], timeout=10)

    def __enter__(self) -> Self:
        return self

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


class LogCursor:
    """What a process logged after a point: `cursor = LogCursor(stack, "payment")`, act, then
    `cursor.read()`."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.path = stack.log_path(name)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def read(self) -> str:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 15.0) -> str:
        return wait_until(
            lambda: out if (out := self.read()).count(text) >= count else None,
            timeout,
            f"{count} x {text!r} in {self.path.name}",
        )


def sql(stack: Stack, service: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Reach one service's database directly, as its administrator: to read what the APIs do
    not show (the outbox), or to corrupt it on purpose. Returns the rows, if any."""
    url = stack.config.admin_database_url(service).replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


@contextlib.asynccontextmanager
async def broker(stack: Stack) -> AsyncIterator[AbstractExchange]:
    """A confirming channel on the run's vhost, for publishing events straight to the exchange."""
    connection = await aio_pika.connect(stack.config.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        yield await channel.get_exchange("saga.events")
    finally:
        await connection.close()


async def publish(exchange: AbstractExchange, envelope: Envelope, routing_key: str) -> None:
    body = envelope.model_dump_json().encode()
    message = aio_pika.Message(
        body,
        message_id=str(envelope.message_id),
        correlation_id=str(envelope.correlation_id),
        type=envelope.type,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await exchange.publish(message, routing_key=routing_key, mandatory=True)


async def publish_event(exchange: AbstractExchange, event: Event) -> Envelope:
    """Publish an event as its producer would, with a fresh message id; return its envelope."""
    envelope = wrap(event, producer="test", causation_id=None)
    await publish(exchange, envelope, event.routing_key)
    return envelope


@contextlib.contextmanager
def stopped(stack: Stack, *names: str) -> Iterator[None]:
    """Stop processes for the block, start them again after it (whatever happens)."""
    stack.stop(*names)
    try:
        yield
    finally:
        stack.start(*names)
        stack.wait_ready(*names)


@contextlib.contextmanager
def restarted_with(stack: Stack, name: str, **env: str) -> Iterator[None]:
    """Run one process with extra settings for the block, then as it normally runs."""
    stack.stop(name)
    stack.start(name, **env)
    try:
        stack.wait_ready(name)
        yield
    finally:
        stack.stop(name)
        stack.start(name)
        stack.wait_ready(name)


async def post_orders(
    stack: Stack, orders: list[tuple[str, list[tuple[str, int, int]]]]
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
