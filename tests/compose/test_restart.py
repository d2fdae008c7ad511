"""A restart of the whole stack (`docker compose down` without -v, then up) keeps every order,
balance and dead letter on its named volumes, and sagas in flight across it complete after."""

import uuid

import aio_pika
import pytest

from shared.dead_letters import read_letters
from tests.clients.api import SagaClient
from tests.clients.broker import broker
from tests.compose.conftest import ComposeStack
from tests.polling import eventually


async def dead_letter_ids(stack: ComposeStack) -> set[str]:
    connection = await aio_pika.connect(stack.config.amqp_url)
    async with connection:
        letters = await read_letters(await connection.channel(), "payment", stack.config.mode)
        return {letter.id for letter in letters}


# The package's last test: its bound also covers the removal of the package's stack
# (tests/compose/conftest.py), after its own down and up.
@pytest.mark.timeout(600)
async def test_down_and_up_again_keeps_everything_and_finishes_what_was_in_flight(
    compose_stack: ComposeStack,
) -> None:
    compose = compose_stack.compose
    with SagaClient(compose_stack) as saga:
        customer, sku = saga.funded_customer(10_000), saga.stocked_sku(10)
        done = saga.place_order(customer, (sku, 1, 1_000))
        saga.wait_for_status(done["order_id"], "CONFIRMED")
        poison = f"kept-{uuid.uuid4().hex[:8]}"
        async with broker(compose_stack) as exchange:
            await exchange.publish(
                aio_pika.Message(b"not json", message_id=poison), routing_key="order.created"
            )

        async def dead_lettered() -> bool:
            return poison in await dead_letter_ids(compose_stack)

        await eventually(dead_lettered, what="the poison in the DLQ")
        # In flight across the restart: payment is down, so its OrderCreated waits in the queue.
        compose.kill("payment")
        waiting = saga.place_order(customer, (sku, 2, 1_000))

    compose.down()  # no --volumes
    compose.up()

    with SagaClient(compose_stack) as saga:
        assert saga.get_order(done["order_id"])["status"] == "CONFIRMED"
        saga.wait_for_status(waiting["order_id"], "CONFIRMED", timeout=60)
        assert saga.balance(customer) == 7_000
        assert saga.product(sku) == {"sku": sku, "available": 7, "reserved": 3}
    assert poison in await dead_letter_ids(compose_stack)
    # Leave the DLQ as it was found.
    connection = await aio_pika.connect(compose_stack.config.amqp_url)
    async with connection:
        for letter in await read_letters(
            await connection.channel(), "payment", compose_stack.config.mode
        ):
            if letter.id == poison:
                await letter.message.ack()
