"""`POST /orders`'s fast path (services/order/api.py, `PlaceFast`) takes a request exactly when
FastAPI's route would: the same body, the same Idempotency-Key, checked against the route
itself on the app without its fast path. No database: a request FastAPI takes fails at the
unit of work (a 503 here: the pool is not open), one it refuses gets its 4xx before that."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from services.order.api import PlaceFast, as_given
from services.order.main import create_app

LINE = {"sku": "s1", "quantity": 2, "unit_price_cents": 150}


@pytest.fixture(scope="module")
def route() -> httpx.ASGITransport:
    """The order app without its fast path: FastAPI's own routing and validation. Its
    lifespan is not run: no database."""
    app = create_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not PlaceFast]
    return httpx.ASGITransport(app=app, raise_app_exceptions=False)


def post(
    route: httpx.ASGITransport, body: bytes, headers: list[tuple[bytes, bytes]]
) -> httpx.Response:
    async def posting() -> httpx.Response:
        async with httpx.AsyncClient(transport=route, base_url="http://app") as client:
            return await client.post("/orders", content=body, headers=headers)

    return asyncio.run(posting())


def given_headers(content_type: str | None, keys: list[str]) -> Headers:
    raw = [(b"idempotency-key", key.encode("latin-1")) for key in keys]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode()))
    return Headers(raw=raw)


def test_a_valid_order_is_taken_with_its_key() -> None:
    body = json.dumps({"customer_id": "c1", "items": [LINE]}).encode()
    taken = as_given(given_headers("application/json", ["k-1"]), body)
    assert taken is not None
    order, key = taken
    assert (order.customer_id, order.items[0].quantity, key) == ("c1", 2, "k-1")
    assert as_given(given_headers("application/json", []), body) is not None


@pytest.mark.parametrize(
    ("content_type", "keys", "body"),
    [
        ("application/json; charset=utf-8", [], {"customer_id": "c", "items": [LINE]}),
        ("text/plain", [], {"customer_id": "c", "items": [LINE]}),
        (None, [], {"customer_id": "c", "items": [LINE]}),
        ("application/json", ["a", "b"], {"customer_id": "c", "items": [LINE]}),
        ("application/json", ["with space"], {"customer_id": "c", "items": [LINE]}),
        ("application/json", ["k" * 201], {"customer_id": "c", "items": [LINE]}),
        ("application/json", [""], {"customer_id": "c", "items": [LINE]}),
        ("application/json", [], {"customer_id": "c", "items": []}),
        ("application/json", [], {"customer_id": "c", "items": [LINE], "coupon": "FREE"}),
        ("application/json", [], [LINE]),
    ],
)
def test_anything_else_is_left_to_the_route(
    content_type: str | None, keys: list[str], body: Any
) -> None:
    assert as_given(given_headers(content_type, keys), json.dumps(body).encode()) is None


@pytest.mark.parametrize("body", [b"", b"{oops", b"[" * 100_000, b'{"customer_id": NaN}'])
def test_a_body_that_is_not_json_is_left_to_the_route(body: bytes) -> None:
    assert as_given(given_headers("application/json", []), body) is None


# Mostly valid orders, each value sometimes swapped for anything: the edges of what is taken.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**64), st.floats(allow_nan=False),
    st.text(max_size=5),
)  # fmt: skip
names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=65)


def sometimes(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` seven times in eight, anything else the eighth."""
    return st.sampled_from((True,) * 7 + (False,)).flatmap(lambda keep: valid if keep else scalars)


lines = sometimes(
    st.fixed_dictionaries(
        {"sku": sometimes(names),
         "quantity": sometimes(st.integers(0, 1_000_001)),
         "unit_price_cents": sometimes(st.integers(-1, 100_000_001))},
        optional={"note": scalars},
    )
)  # fmt: skip
orders = sometimes(
    st.fixed_dictionaries(
        {
            "customer_id": sometimes(names),
            "items": sometimes(
                st.lists(lines, min_size=1, max_size=3) | st.lists(lines, max_size=51)
            ),
        },
        optional={"coupon": scalars},
    )
)
a_key = st.booleans().flatmap(
    lambda keep: (
        st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1)
        if keep
        else st.sampled_from(["", " ", "a b", "k" * 200, "k" * 201, "é"])
    )
)
keys = st.lists(a_key, min_size=1, max_size=1) | st.just([]) | st.lists(a_key, max_size=2)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=orders, keys=keys)
def test_the_fast_path_takes_what_the_route_takes_and_nothing_else(
    route: httpx.ASGITransport, order: Any, keys: list[str]
) -> None:
    body = json.dumps(order).encode()
    headers = [(b"content-type", b"application/json")]
    headers += [(b"idempotency-key", key.encode("latin-1")) for key in keys]
    answer = post(route, body, headers)
    taken = as_given(given_headers("application/json", keys), body)
    # The route refuses with a 4xx, or takes the request and finds no database.
    assert answer.status_code in (400, 422, 503), answer.text
    if len(keys) < 2:
        assert (taken is not None) == (answer.status_code == 503), (answer.text, keys)
    else:
        assert taken is None
