import json
from typing import Any
from uuid import uuid4

import pytest

from shared.envelope import PoisonMessage, decode, wrap
from shared.events import EVENT_TYPES, OrderCreated, PaymentFailed
from tests.bodies import order_created_body


def test_a_wrapped_event_decodes_to_the_same_event() -> None:
    event = PaymentFailed(order_id=uuid4(), reason="insufficient_funds")
    envelope = wrap(event, producer="payment", causation_id=uuid4())
    decoded_envelope, decoded = decode(envelope.model_dump_json().encode())
    assert decoded == event
    assert decoded_envelope == envelope
    assert envelope.correlation_id == event.order_id


def test_unknown_fields_in_data_are_ignored() -> None:
    body = order_created_body()
    body["data"]["gift_wrap"] = True  # type: ignore[index]
    _, event = decode(json.dumps(body).encode())
    assert isinstance(event, OrderCreated)
    assert event.total_cents == 300


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not utf-8", "not_json"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "no_message_id"),
        (json.dumps(order_created_body(message_id=None)).encode(), "no_message_id"),
        (json.dumps(order_created_body(message_id="not-a-uuid")).encode(), "invalid_envelope"),
        (json.dumps(order_created_body(occurred_at="yesterday")).encode(), "invalid_envelope"),
        (json.dumps(order_created_body(type="OrderShipped")).encode(), "unknown_type"),
        (json.dumps(order_created_body(version=2)).encode(), "unknown_version"),
        (json.dumps(order_created_body(data={"order_id": "x"})).encode(), "invalid_data"),
        (json.dumps(order_created_body(correlation_id=str(uuid4()))).encode(), "invalid_data"),
        (json.dumps(order_created_body(version=True)).encode(), "invalid_envelope"),
        (json.dumps(order_created_body(producer="ord\x1ber")).encode(), "invalid_envelope"),
        (b"[" * 100_000 + b"]" * 100_000, "not_json"),
    ],
)
def test_poison_is_named_by_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        decode(raw)
    assert caught.value.reason == reason


def test_a_line_with_no_units_is_poison() -> None:
    body = order_created_body()
    body["data"]["items"][0]["quantity"] = 0  # type: ignore[index]
    with pytest.raises(PoisonMessage, match=r"invalid_data: data\.items\.0\.quantity"):
        decode(json.dumps(body).encode())


def test_every_event_type_has_its_own_routing_key() -> None:
    keys = [event.routing_key for event in EVENT_TYPES.values()]
    assert len(set(keys)) == len(keys) == 10


def _order_created_with(change: dict[str, object], line: dict[str, object] | None = None) -> bytes:
    body: dict[str, Any] = order_created_body()
    body["data"].update(change)
    body["data"]["items"][0].update(line or {})
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "raw",
    [
        _order_created_with({"customer_id": "cust\x00omer"}),  # PostgreSQL's text takes no NUL
        _order_created_with({"customer_id": "\ud800"}),  # a lone surrogate is not Unicode
        _order_created_with({"customer_id": "a" * 65}),
        _order_created_with({"total_cents": 2**63}),  # past a bigint
        _order_created_with({"total_cents": "300"}),
        _order_created_with({}, {"sku": "sku\n2"}),
        _order_created_with({}, {"quantity": True}),
        _order_created_with({}, {"unit_price_cents": 1.5}),
    ],
    ids=["nul", "surrogate", "long-name", "past-bigint", "string", "newline", "bool", "fraction"],
)
def test_what_the_database_or_a_log_line_cannot_take_is_poison(raw: bytes) -> None:
    with pytest.raises(PoisonMessage) as caught:
        decode(raw)
    assert caught.value.reason == "invalid_data"


def test_an_integral_float_is_an_integer_as_json_schema_says() -> None:
    _, event = decode(_order_created_with({"total_cents": 300.0}))
    assert isinstance(event, OrderCreated)
    assert event.total_cents == 300
