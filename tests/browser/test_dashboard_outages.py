"""A dashboard page left open through a broker restart and through a restart of the dashboard's
own database catches up by itself: no reload, every saga there once.

A stack of its own on a RabbitMQ node of its own, with the dashboard's database on a PostgreSQL
cluster of its own: those are the servers this test kills (the machine's are never touched).
"""

import asyncio
import signal
from pathlib import Path

from playwright.async_api import Page, expect

from scripts.stack import Stack
from scripts.stack.instances import OwnPostgres, OwnRabbitMQ
from tests.browser.conftest import events_projected, marked, still_marked
from tests.clients.api import SagaClient
from tests.conftest import stack_on

TIMEOUT_MS = 60_000


async def test_an_open_page_recovers_from_a_broker_and_a_database_restart_by_itself(
    page: Page, tmp_path: Path
) -> None:
    rabbit, postgres = OwnRabbitMQ(tmp_path / "rabbitmq"), OwnPostgres()
    rabbit.start()
    postgres.start()
    try:
        with (
            stack_on(rabbit, tmp_path / "stack", "sagadash",
                     pg_ports={"dashboard": postgres.port}) as stack,
            SagaClient(stack) as saga,
        ):  # fmt: skip
            await _through_restarts(page, stack, saga, rabbit, postgres)
    finally:
        rabbit.stop()
        postgres.remove()


async def _through_restarts(
    page: Page, stack: Stack, saga: SagaClient[Stack], rabbit: OwnRabbitMQ, postgres: OwnPostgres
) -> None:
    customer, sku = saga.funded_customer(1_000_000), saga.stocked_sku(1_000)
    await page.goto(f"{stack.config.dashboard_url}/?customer={customer}")
    await marked(page)
    confirmed = page.locator("#saga-rows tr .badge", has_text="confirmed")

    async def place(count: int) -> list[str]:
        placed = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(count)]
        for order_id in placed:
            await asyncio.to_thread(saga.wait_for_status, order_id, "CONFIRMED", 90)
        return placed

    orders = await place(3)
    await expect(confirmed).to_have_count(3, timeout=TIMEOUT_MS)

    rabbit.kill(signal.SIGKILL)
    rabbit.start()
    orders += await place(3)
    await expect(confirmed).to_have_count(6, timeout=TIMEOUT_MS)
    assert await still_marked(page), "the page reloaded instead of reconnecting"

    postgres.kill(signal.SIGKILL)
    postgres.start()
    orders += await place(3)
    await expect(confirmed).to_have_count(9, timeout=TIMEOUT_MS)
    assert await still_marked(page), "the page reloaded instead of reconnecting"

    assert events_projected(stack, orders) == [4] * 9  # created, paid, reserved, confirmed
