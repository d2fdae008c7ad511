"""Faults on the links between the processes and their servers, through a TCP fault proxy
(scripts/chaos/proxy.py): every process of this stack reaches PostgreSQL and RabbitMQ through a
link of its own. Every test runs on the choreographed saga and on the orchestrated one.

- A COMMIT whose reply is lost, and one that never reaches the server, at the three points where
  it matters: the POST (the client retries with its Idempotency-Key), the relay's mark, and a
  consumer's unit of work. Either way, every effect happens once.
- Black holes (bytes taken, nothing answered) longer than the bounds of a connection's loan and
  of the broker's heartbeat: answered, said by /readyz, and resumed once healed.
- Connections reset mid-transaction and mid-publish, and added latency, under load.
"""

import time
from collections.abc import Iterator

import httpx
import pytest

from scripts.chaos.proxy import FaultProxy, Link, route_through
from scripts.stack import Stack, StackConfig
from shared.system import PROCESSES, Mode
from tests.clients.api import SagaClient
from tests.clients.database import sql
from tests.clients.invariants import wait_consistent
from tests.clients.processes import LogCursor
from tests.conftest import env_of
from tests.polling import wait_until

PLACE = "INSERT INTO orders"
MARK = "UPDATE outbox SET published_at"
APPLY = "INSERT INTO inbox"


@pytest.fixture(scope="module")
def proxy(mode: Mode) -> Iterator[FaultProxy]:
    """One for each mode's stack: a link belongs to one process of one stack."""
    proxy = FaultProxy()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def stack(
    proxy: FaultProxy, mode: Mode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack of its own in each mode, every link through the proxy."""
    # An order's deadline well past the broker's heartbeat give-up (three missed beats of 10 s,
    # longer on a loaded machine): the reaper must not cancel the order a test waits on.
    env = env_of(mode) | {"ORDER_DEADLINE_SECONDS": "300"}
    config = StackConfig.isolated("sagalinks", tmp_path_factory.mktemp("links"), env=env, mode=mode)
    route_through(proxy, config, list(PROCESSES))
    with Stack(config).running() as stack:
        yield stack


@pytest.fixture
def saga(stack: Stack, proxy: FaultProxy) -> Iterator[SagaClient[Stack]]:
    with SagaClient(stack) as client:
        yield client
    proxy.heal()


def link(proxy: FaultProxy, name: str) -> Link:
    return proxy.links[name]


def order_body(customer: str, sku: str) -> dict[str, object]:
    line = {"sku": sku, "quantity": 1, "unit_price_cents": 250}
    return {"customer_id": customer, "items": [line]}


def confirmed_through(
    saga: SagaClient, faulty: Link, marker: str, reply_lost: bool
) -> tuple[str, str]:
    """A saga placed with a lost COMMIT armed on a link: (its customer, its order), once the
    fault struck and the order is CONFIRMED."""
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
    fault = faulty.lose_commit(marker, reply_lost=reply_lost)
    order_id = saga.place_order(customer, (sku, 1, 250))["order_id"]
    saga.wait_for_status(order_id, "CONFIRMED")
    assert fault.done.is_set()
    return customer, order_id


@pytest.mark.parametrize("reply_lost", [True, False], ids=["reply-lost", "commit-lost"])
def test_a_post_whose_commit_is_lost_is_retried_with_its_key_into_one_order(
    saga: SagaClient, stack: Stack, proxy: FaultProxy, reply_lost: bool
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
    key = {"Idempotency-Key": f"lost-{reply_lost}-{customer}"}
    fault = link(proxy, "order→postgres").lose_commit(PLACE, reply_lost=reply_lost)

    first = saga.order.post("/orders", json=order_body(customer, sku), headers=key)
    assert fault.done.is_set()
    assert first.status_code == 503, first.text
    assert first.json() == {"detail": "database unavailable, try again"}

    again = saga.order.post("/orders", json=order_body(customer, sku), headers=key)
    # The order was committed (its reply lost): the same order. Or it was not: created now.
    assert again.status_code == (200 if reply_lost else 201), again.text
    order_id = again.json()["order_id"]
    saga.wait_for_status(order_id, "CONFIRMED")
    assert sql(stack, "order", "SELECT count(*) FROM orders WHERE customer_id = %s", customer) == [
        (1,)
    ]
    assert saga.balance(customer) == 10_000 - 250


@pytest.mark.parametrize("reply_lost", [True, False], ids=["reply-lost", "commit-lost"])
def test_a_relay_whose_mark_is_lost_publishes_each_event_with_one_effect(
    saga: SagaClient, stack: Stack, proxy: FaultProxy, reply_lost: bool
) -> None:
    relay_log, payment_log = LogCursor(stack, "order-relay"), LogCursor(stack, "payment")
    customer, order_id = confirmed_through(
        saga, link(proxy, "order-relay→postgres"), MARK, reply_lost
    )
    relay_log.wait_for("relay pass failed")
    if not reply_lost:
        # The mark rolled back with its claim: published again, and the second copy absorbed.
        payment_log.wait_for(f"order {order_id[:8]} | duplicate {saga.charge_request[0]}")
    # Or the mark committed: the row is not published again.
    published = relay_log.read().count(f"order {order_id[:8]} | published OrderCreated")
    assert published == (1 if reply_lost else 2)
    wait_until(
        lambda: (
            sql(stack, "order", "SELECT count(*) FROM outbox WHERE published_at IS NULL") == [(0,)]
        ),
        what="the outbox to be marked",
    )
    assert len(saga.payments(order_id)["charges"]) == 1
    assert saga.balance(customer) == 10_000 - 250


@pytest.mark.parametrize("reply_lost", [True, False], ids=["reply-lost", "commit-lost"])
def test_a_consumer_whose_commit_is_lost_is_redelivered_with_one_effect(
    saga: SagaClient, stack: Stack, proxy: FaultProxy, reply_lost: bool
) -> None:
    payment_log = LogCursor(stack, "payment")
    customer, order_id = confirmed_through(saga, link(proxy, "payment→postgres"), APPLY, reply_lost)
    # Committed and never acked: the redelivery is absorbed. Or rolled back: applied now.
    charge = saga.charge_request[0]
    outcome = f"duplicate {charge}" if reply_lost else "charged 250"
    said = payment_log.wait_for(f"order {order_id[:8]} | {outcome}")
    assert f"order {order_id[:8]} | database unavailable, {charge} waits" in said
    assert len(saga.payments(order_id)["charges"]) == 1
    assert saga.balance(customer) == 10_000 - 250


def test_a_black_holed_database_gets_a_503_in_bounded_time_and_work_resumes(
    saga: SagaClient, stack: Stack, proxy: FaultProxy
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
    order_url = stack.config.base_url("order")
    link(proxy, "order→postgres").black_hole()

    started = time.monotonic()
    answer = httpx.post(f"{order_url}/orders", json=order_body(customer, sku), timeout=60)
    took = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    # The loan's bound (15 s), then psycopg's cancel and its wait (5 s each).
    assert took < 35, took
    ready = httpx.get(f"{order_url}/readyz", timeout=60)
    assert ready.status_code == 503
    assert ready.json()["database"].startswith("unreachable")

    proxy.heal()
    order_id = saga.place_order(customer, (sku, 1, 250))["order_id"]
    saga.wait_for_status(order_id, "CONFIRMED", timeout=30)
    wait_consistent(stack.config)


def test_a_black_holed_broker_link_is_given_up_by_its_heartbeat_and_the_saga_goes_on(
    saga: SagaClient, stack: Stack, proxy: FaultProxy
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
    payment_url = stack.config.base_url("payment")
    payment_log = LogCursor(stack, "payment")
    link(proxy, "payment→rabbitmq").black_hole()
    order_id = saga.place_order(customer, (sku, 1, 250))["order_id"]

    def broker_down() -> bool:
        ready = httpx.get(f"{payment_url}/readyz", timeout=5)
        return ready.status_code == 503 and ready.json()["broker"] == "unreachable"

    # Three missed heartbeats of 10 s: given up within 33 s, seen at the next check.
    wait_until(broker_down, 45, "payment to give up its silent broker connection")
    assert saga.get_order(order_id)["status"] == "PENDING"
    payment_log.wait_for("lost the broker at")

    proxy.heal()
    saga.wait_for_status(order_id, "CONFIRMED", timeout=30)
    assert len(saga.payments(order_id)["charges"]) == 1
    wait_consistent(stack.config)


def test_resets_and_latency_on_every_link_under_load_lose_nothing(
    saga: SagaClient, stack: Stack, proxy: FaultProxy
) -> None:
    customer, sku = saga.funded_customer(1_000_000), saga.stocked_sku(1_000)
    for each in proxy.links.values():
        each.delay(0.05)
    orders: list[str] = []
    resets = 0
    for round_ in range(8):
        for _ in range(5):
            key = {"Idempotency-Key": f"load-{customer}-{len(orders)}"}

            def accepted(key: dict[str, str] = key) -> httpx.Response | None:
                # A reset broke the connections in the pool: 503s until they are replaced,
                # and the client retries with its key.
                answer = saga.order.post("/orders", json=order_body(customer, sku), headers=key)
                assert answer.status_code in (200, 201, 503), answer.text
                return answer if answer.status_code != 503 else None

            answer = wait_until(accepted, 30, "the order to be accepted")
            orders.append(answer.json()["order_id"])
        # Mid-transaction, mid-publish, mid-delivery: whatever each link was doing.
        links = list(proxy.links.values())
        resets += sum(links[i].reset() for i in range(round_ % 3, len(links), 3))
    proxy.heal()
    stack.wait_ready()  # each service's readiness ping clears its pool of reset connections

    assert resets >= 8
    for order_id in orders:
        saga.wait_for_status(order_id, "CONFIRMED", timeout=60)
    assert saga.balance(customer) == 1_000_000 - 250 * len(orders)
    assert saga.product(sku)["available"] == 1_000 - len(orders)
    wait_consistent(stack.config)
