"""The dashboard's read model, pure: a saga's status from what happened in any order, repeats
and observations counted apart, anything unreadable kept out, and the timeline's layout."""

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from dashboard.projection import (
    CANCELLED,
    COMPENSATED,
    CONFIRMED,
    IN_FLIGHT,
    REJECTED,
    Saga,
    Seen,
    apply,
    causal_order,
)
from dashboard.timeline import lay_out
from shared.observations import OBSERVATIONS_EXCHANGE, RETRIED
from shared.tracing import trace_id_of

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def seen(order_id: UUID, kind: str, offset: int, ms: int, **data: Any) -> Seen:
    body = {
        "message_id": str(uuid4()),
        "type": kind,
        "correlation_id": str(order_id),
        "producer": "order",
        "occurred_at": (START + timedelta(milliseconds=ms)).isoformat(),
        "data": {"order_id": str(order_id), **data},
    }
    return Seen.read(offset, json.dumps(body).encode(), "saga.events", None, kind, {})


def saga_of(messages: list[Seen]) -> Saga:
    saga = None
    for message in messages:
        saga = apply(saga, message, repeat=False)
    assert saga is not None
    return saga


@pytest.mark.parametrize(
    ("steps", "status"),
    [
        (["OrderCreated"], IN_FLIGHT),
        (["OrderCreated", "PaymentSucceeded", "InventoryReserved", "OrderConfirmed"], CONFIRMED),
        (["OrderCreated", "PaymentFailed", "OrderRejected"], REJECTED),
        (
            [
                "OrderCreated",
                "PaymentSucceeded",
                "InventoryFailed",
                "OrderRejected",
                "PaymentRefunded",
            ],
            COMPENSATED,
        ),
        (["OrderCreated", "OrderCancelled"], CANCELLED),
        (
            [
                "OrderCreated",
                "PaymentSucceeded",
                "InventoryReserved",
                "OrderCancelled",
                "PaymentRefunded",
                "InventoryReleased",
            ],
            COMPENSATED,
        ),
    ],
)
def test_the_status_follows_from_what_happened_in_any_order(steps: list[str], status: str) -> None:
    order_id = uuid4()
    messages = [seen(order_id, kind, offset, offset * 10) for offset, kind in enumerate(steps)]
    for shuffle in range(5):
        random.Random(shuffle).shuffle(messages)
        assert saga_of(messages).status == status


def test_a_cancel_whose_refund_has_not_come_yet_is_cancelled_and_waits_for_payment() -> None:
    order_id = uuid4()
    saga = saga_of(
        [seen(order_id, kind, n, n) for n, kind in enumerate(["OrderCreated", "PaymentSucceeded",
                                                               "OrderCancelled"])]
    )  # fmt: skip
    assert (saga.status, saga.compensation_pending) == (CANCELLED, True)
    assert saga.waiting_on() == "payment: to refund the charge"


@pytest.mark.parametrize(
    ("outcome", "facts", "status", "waiting_on"),
    [
        (None, [], IN_FLIGHT, "payment: to charge the customer"),
        (None, ["charged"], IN_FLIGHT, "inventory: to reserve the stock"),
        (None, ["charged", "reserved"], IN_FLIGHT, "order: to confirm the order"),
        (None, ["reserved"], IN_FLIGHT, "order: to confirm the order"),  # overtook its payment
        (None, ["payment_failed"], IN_FLIGHT, "order: to reject the order"),
        (None, ["charged", "inventory_failed"], IN_FLIGHT, "order: to reject the order"),
        (CONFIRMED, ["charged", "reserved"], CONFIRMED, "nothing"),
        (REJECTED, ["payment_failed"], REJECTED, "nothing"),
        (REJECTED, ["charged", "inventory_failed"], REJECTED, "payment: to refund the charge"),
        (REJECTED, ["charged", "inventory_failed", "refunded"], COMPENSATED, "nothing"),
        (CANCELLED, [], CANCELLED, "nothing"),
        (CANCELLED, ["charged", "reserved"], CANCELLED, "payment: to refund the charge"),
        (CANCELLED, ["charged", "refunded", "reserved"], CANCELLED,
         "inventory: to release the stock"),
        (CANCELLED, ["charged", "reserved", "released"], CANCELLED,
         "payment: to refund the charge"),
        (CANCELLED, ["charged", "refunded", "reserved", "released"], COMPENSATED, "nothing"),
    ],
)  # fmt: skip
def test_status_and_where_a_saga_waits_follow_its_facts(
    outcome: str | None, facts: list[str], status: str, waiting_on: str
) -> None:
    saga = Saga(uuid4(), START, START, outcome=outcome, steps=dict.fromkeys(facts, True))
    assert (saga.status, saga.waiting_on()) == (status, waiting_on)


def test_repeats_and_observations_are_counted_and_change_nothing_else() -> None:
    order_id = uuid4()
    created = seen(order_id, "OrderCreated", 0, 0, customer_id="alice", total_cents=500)
    saga = apply(None, created, repeat=False)
    saga = apply(saga, created, repeat=True)
    retry = Seen.read(
        2,
        json.dumps({"message_id": "m", "type": RETRIED, "correlation_id": str(order_id),
                    "producer": "payment", "data": {"attempt": 1}}).encode(),
        OBSERVATIONS_EXCHANGE, None, RETRIED, {},
    )  # fmt: skip
    saga = apply(saga, retry, repeat=False)
    assert saga is not None
    assert (saga.events, saga.repeats, saga.retries) == (1, 1, 1)
    assert (saga.customer_id, saga.total_cents, saga.status) == ("alice", 500, IN_FLIGHT)


@pytest.mark.parametrize(
    "body",
    [b"\x00\x01 not json", b"[1, 2]", b'{"message_id": "x"}', b'{"data": {"order_id": "nope"}}',
     json.dumps({"message_id": "\u0000x\ud800", "correlation_id": "not a uuid"}).encode()],
)  # fmt: skip
def test_an_unreadable_message_names_no_saga_and_stores_cleanly(body: bytes) -> None:
    found = Seen.read(7, body, "saga.events", "poison\x00", None, {})
    assert found.kind == "unreadable" and found.order_id is None
    assert "\x00" not in found.message_id
    assert apply(None, found, repeat=False) is None


def test_causes_come_before_their_effects_whatever_the_clocks_say() -> None:
    events: list[dict[str, Any]] = [
        {"message_id": "a", "causation_id": None, "occurred_at": "3", "stream_offset": 3},
        {"message_id": "b", "causation_id": "a", "occurred_at": "1", "stream_offset": 1},
        {"message_id": "c", "causation_id": "b", "occurred_at": "2", "stream_offset": 2},
    ]
    assert [e["message_id"] for e in causal_order(events)] == ["a", "b", "c"]


def test_a_traceparent_gives_its_trace_id() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of({"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}) == trace
    assert trace_id_of({"traceparent": b"garbage"}) is None
    assert trace_id_of({}) is None


@pytest.mark.parametrize("count", [4, 12])
def test_the_timeline_keeps_every_mark_apart_and_in_time_order(count: int) -> None:
    order_id = uuid4()
    kinds = ["OrderCreated", "PaymentSucceeded", "InventoryFailed", "PaymentRefunded"]
    messages: list[dict[str, Any]] = [
        {
            "stream_offset": n, "message_id": f"m{n}", "kind": "event", "repeat": False,
            "type": kinds[n % 4], "producer": ("order", "payment", "inventory")[n % 3],
            "causation_id": f"m{n - 1}" if n else None,
            "occurred_at": START + timedelta(milliseconds=[0, 5, 9, 3000][n % 4] + 10 * n),
            "data": {},
        }
        for n in range(count)
    ]  # fmt: skip
    saga = {"order_id": order_id, "started_at": START, "messages": messages,
            "deadline_at": START + timedelta(seconds=30), "finished_at": None}  # fmt: skip
    timeline = lay_out(saga, now=START + timedelta(seconds=5))
    xs = [mark.x for mark in timeline.marks]
    assert xs == sorted(xs) and len(set(xs)) == count
    assert min(b - a for a, b in itertools.pairwise(xs)) >= 90  # labels never collide
    assert len(timeline.arrows) == count - 1  # every effect points back at its cause
    assert timeline.deadline_x is None  # not passed yet
    assert {mark.kind for mark in timeline.marks} >= {"forward", "failure", "compensation"}
