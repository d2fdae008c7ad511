"""What an app answers before any route runs: a 405 names every method of the path, and a 422
carries each wrong field without echoing input that UTF-8 cannot encode. No database is needed:
these answers come before a route's dependencies (the lifespan is not run)."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from dashboard.main import create_app as dashboard_app
from services.order.main import create_app as order_app


@pytest.fixture(scope="module")
async def order() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(order_app()) as client:
        yield client


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/orders", "GET, POST"),  # two routes on one path
        ("OPTIONS", "/orders", "GET, POST"),
        ("PUT", "/orders/3f2a0000-0000-4000-8000-000000000000", "GET"),
        ("GET", "/orders/3f2a0000-0000-4000-8000-000000000000/cancel", "POST"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_a_405_names_every_method_of_the_path(
    order: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    answer = await order.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allowed
    assert answer.json() == {"detail": f"{method} is not allowed here"}


async def test_the_dashboard_api_names_them_too() -> None:
    async with _client(dashboard_app()) as dashboard:
        answer = await dashboard.request("TRACE", "/api/sagas")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET")


@pytest.mark.parametrize(
    "body",
    [
        b'{"customer_id": "\\ud800", "items": []}',  # a lone surrogate: not encodable in UTF-8
        b'{"customer_id": "c", "items": [{"sku": "\\udfff", "quantity": 1}]}',
    ],
)
async def test_a_422_never_fails_to_encode_its_detail(
    order: httpx.AsyncClient, body: bytes
) -> None:
    answer = await order.post("/orders", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    fields = answer.json()["detail"]
    assert fields and all(set(field) == {"loc", "msg", "type"} for field in fields)
