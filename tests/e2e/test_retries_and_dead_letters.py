"""Poison goes to the DLQ at once; transient failures retry with growing delays, then go to the
DLQ with the reason and attempt count; the DLQ tool lists, shows, replays and purges, and so
does the dashboard given a cluster's several nodes.

The test stack retries after 200, 500 and 1000 ms (tests/conftest.py). Every test here runs
twice: on the run's stack (this machine's RabbitMQ) and on a stack of its own whose broker is
RabbitMQ 4 in a container, the one docker-compose.yml ships: dead-lettering, delivery limits
and TTL queues are broker behaviour.
"""

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import aio_pika
import httpx
import pytest

from scripts.stack import Stack
from scripts.stack.instances import ContainerRabbitMQ, free_port
from shared.system import Mode
from tests.bodies import order_created_body
from tests.clients.api import SagaClient
from tests.clients.broker import broker
from tests.clients.database import sql
from tests.clients.processes import LogCursor, restarted_with
from tests.conftest import BROKERS, stack_on
from tests.polling import wait_until

# Choreography only: it fails and poisons choreography's handlers and queues. The orchestrated
# saga's messages are retried and dead-lettered by the same consumer (shared/consumer.py).
pytestmark = pytest.mark.only_in(Mode.CHOREOGRAPHY)


@pytest.fixture(scope="module", params=BROKERS)
def stack(
    request: pytest.FixtureRequest, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    if request.param == "local":
        yield stack
        return
    broker = ContainerRabbitMQ()
    broker.start()
    try:
        with stack_on(broker, tmp_path_factory.mktemp("rabbitmq4"), "sagatest4") as own:
            yield own
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def saga(stack: Stack) -> Iterator[SagaClient[Stack]]:
    with SagaClient(stack) as client:
        yield client


def dlq(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the DLQ tool against the test run's vhost."""
    return subprocess.run(
        [sys.executable, "-m", "scripts.ops.dlq", "--amqp-url", stack.config.amqp_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


POISON = {
    "not_json": b"\x00\x01 definitely not json",
    "no_message_id": json.dumps({"type": "OrderCreated"}).encode(),
    "invalid_envelope": json.dumps(order_created_body(occurred_at="last tuesday")).encode(),
    "invalid_data": json.dumps(order_created_body(data={"order_id": "nope"})).encode(),
    "unknown_type": json.dumps(order_created_body(type="OrderTeleported")).encode(),
    "unknown_version": json.dumps(order_created_body(version=9)).encode(),
}


async def test_poison_is_dead_lettered_at_once_with_its_reason_and_the_service_goes_on(
    saga: SagaClient,
) -> None:
    ids = {reason: f"poison-{reason}-{uuid.uuid4().hex[:6]}" for reason in POISON}
    async with broker(saga.stack) as exchange:
        for reason, body in POISON.items():
            await exchange.publish(
                aio_pika.Message(body, message_id=ids[reason], type="OrderCreated"),
                routing_key="order.created",
                mandatory=True,
            )

    def listed() -> str:
        return (
            out
            if all(i in (out := dlq(saga.stack, "list", "payment").stdout) for i in ids.values())
            else ""
        )

    listing = await asyncio.to_thread(wait_until, listed, 15, "the poison in payment's DLQ")
    for reason, message_id in ids.items():
        [row] = [line for line in listing.splitlines() if line.startswith(message_id)]
        assert row.split()[2] == reason, row
        assert row.split()[3] == "1", row

    shown = dlq(saga.stack, "show", "payment", ids["invalid_data"])
    assert "header x-dead-letter-reason: invalid_data" in shown.stdout
    assert (
        "header x-dead-letter-detail: data.order_id: Input should be a valid UUID" in shown.stdout
    )

    # The service went on consuming: a real order still completes.
    customer, sku = saga.funded_customer(500), saga.stocked_sku(5)
    order_id = saga.place_order(customer, (sku, 1, 100))["order_id"]
    await asyncio.to_thread(saga.wait_for_status, order_id, "CONFIRMED")


def test_a_handler_failing_twice_is_retried_and_succeeds(saga: SagaClient, stack: Stack) -> None:
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(5)
    log = LogCursor(stack, "payment")
    with restarted_with(stack, "payment", FAULT_FAIL_HANDLER="charge_for_order:2"):
        order_id = saga.place_order(customer, (sku, 1, 300))["order_id"]
        saga.wait_for_status(order_id, "CONFIRMED")
    text = log.read()
    short = order_id[:8]
    assert f"order {short} | OrderCreated failed (attempt 1), retrying in 0.2 s" in text
    assert f"order {short} | OrderCreated failed (attempt 2), retrying in 0.5 s" in text
    assert f"order {short} | charged 300" in text
    assert len(saga.payments(order_id)["charges"]) == 1


def dead_lettered_order(saga: SagaClient, stack: Stack) -> tuple[str, str]:
    """An order whose OrderCreated payment failed on every attempt: its id and the message's,
    which is in payment's DLQ."""
    customer, sku = saga.funded_customer(1_000), saga.stocked_sku(5)
    log = LogCursor(stack, "payment")
    with restarted_with(stack, "payment", FAULT_FAIL_HANDLER="charge_for_order:100"):
        order_id = saga.place_order(customer, (sku, 2, 150))["order_id"]
        log.wait_for(f"order {order_id[:8]} | dead-lettered", timeout=20)
    assert saga.get_order(order_id)["status"] == "PENDING"
    return order_id, _message_of(stack, order_id)


def test_a_handler_that_keeps_failing_is_dead_lettered_then_replayed_to_completion(
    saga: SagaClient, stack: Stack
) -> None:
    order_id, message_id = dead_lettered_order(saga, stack)
    [row] = [
        line for line in dlq(stack, "list", "payment").stdout.splitlines() if message_id in line
    ]
    assert row.split()[2] == "retries_exhausted"
    assert row.split()[1] == "OrderCreated"
    assert row.split()[3] == "4"  # three retries, then the DLQ
    shown = dlq(stack, "show", "payment", message_id).stdout
    assert "injected failure in charge_for_order" in shown

    replayed = dlq(stack, "replay", "payment", message_id)
    assert replayed.returncode == 0, replayed.stderr
    saga.wait_for_status(order_id, "CONFIRMED")
    assert len(saga.payments(order_id)["charges"]) == 1
    assert message_id not in dlq(stack, "list", "payment").stdout


def test_the_dashboard_lists_and_replays_dead_letters_given_several_broker_nodes(
    saga: SagaClient, stack: Stack
) -> None:
    """AMQP_URL naming several nodes, as on a cluster (docker-compose.cluster.yml): the first
    refuses here (nothing listens on it), the second is the stack's. The dead letters are read
    and replayed on a connection to the node that answers."""
    order_id, message_id = dead_lettered_order(saga, stack)
    nodes = stack.config.amqp_url_of("dashboard", [free_port(), *stack.config.amqp_node_ports])
    with (
        restarted_with(stack, "dashboard", AMQP_URL=nodes),
        httpx.Client(base_url=stack.config.dashboard_url, timeout=30) as dashboard,
    ):
        answer = dashboard.get("/api/dead-letters")
        assert answer.status_code == 200, answer.text
        listed = [
            (letter["service"], letter["message_id"], letter["order_id"])
            for group in answer.json()["groups"]
            for letter in group["letters"]
        ]
        assert ("payment", message_id, order_id) in listed, listed
        replayed = dashboard.post(
            "/api/dead-letters/replay",
            json={"messages": [f"payment/{message_id}"], "operator": "a test"},
        )
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["replayed"] == [f"payment/{message_id}"]
    saga.wait_for_status(order_id, "CONFIRMED")
    assert len(saga.payments(order_id)["charges"]) == 1


def test_the_dlq_tool_explains_itself(stack: Stack) -> None:
    assert dlq(stack, "replay", "payment").returncode == 2  # argparse: ids or --all
    missing = dlq(stack, "replay", "payment", "no-such-id")
    assert missing.returncode == 1 and "no-such-id" in missing.stderr
    refused = dlq(stack, "purge", "payment")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    down = subprocess.run(
        [sys.executable, "-m", "scripts.ops.dlq", "--amqp-url", "amqp://guest:guest@127.0.0.1:1/",
         "list", "payment"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert down.returncode == 2 and "cannot reach RabbitMQ" in down.stderr
    assert "Traceback" not in down.stderr


def test_purge_empties_the_dlq(stack: Stack) -> None:
    purged = dlq(stack, "purge", "payment", "--yes")
    assert purged.returncode == 0 and "purged" in purged.stdout
    assert "empty" in dlq(stack, "list", "payment").stdout


def _message_of(stack: Stack, order_id: str) -> str:
    [(message_id,)] = sql(
        stack,
        "order",
        "SELECT message_id::text FROM outbox WHERE body->>'type' = 'OrderCreated' "
        "AND body->>'correlation_id' = %s",
        order_id,
    )
    return str(message_id)
