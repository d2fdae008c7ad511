"""What an app answers before any route runs: a 405 names every method of the path, a 422
carries each wrong field without echoing input that UTF-8 cannot encode, a body that is not JSON
is a 400 and one past 64 KiB a 413. No database is needed: these answers come before a route's
dependencies (the lifespan is not run)."""

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from dashboard.main import create_app as dashboard_app
from services.inventory.main import create_app as inventory_app
from services.order.main import create_app as order_app
from services.payment.main import create_app as payment_app
from shared.http import MAX_BODY_BYTES


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


# A route of each app that takes a JSON body.
POSTS = [
    pytest.param(order_app, "/orders", id="order"),
    pytest.param(payment_app, "/accounts/c/deposits", id="payment"),
    pytest.param(inventory_app, "/products/s/restock", id="inventory"),
    pytest.param(dashboard_app, "/api/dead-letters/replay", id="dashboard"),
]
JSON = {"content-type": "application/json"}


def json_of_size(size: int) -> bytes:
    """A JSON object of exactly `size` bytes that no route takes (its one field is unknown)."""
    body = b'{"padding": "' + b"x" * (size - 15) + b'"}'
    assert len(body) == size
    return body


@pytest.mark.parametrize(("app", "path"), POSTS)
async def test_a_body_past_64_kib_is_413_and_one_at_the_bound_is_read(
    app: Callable[[], FastAPI], path: str
) -> None:
    async with _client(app()) as client:
        over = await client.post(path, content=json_of_size(MAX_BODY_BYTES + 1), headers=JSON)
        at = await client.post(path, content=json_of_size(MAX_BODY_BYTES), headers=JSON)
    assert over.status_code == 413, over.text
    assert at.status_code == 422, at.text  # read whole, and refused for what it says


@pytest.mark.parametrize(("app", "path"), POSTS)
@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{oops", "the body is not JSON: Expecting property name enclosed in double quotes"),
        (b'{"customer_id": "c",', "the body is not JSON: Expecting property name"),
        (b"[" * 20_000 + b"]" * 20_000, "There was an error parsing the body"),
    ],
    ids=["not-json", "cut-short", "nested-too-deeply"],
)
async def test_a_body_that_cannot_be_parsed_is_a_400_in_words(
    app: Callable[[], FastAPI], path: str, body: bytes, why: str
) -> None:
    async with _client(app()) as client:
        answer = await client.post(path, content=body, headers=JSON)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(why), answer.text
