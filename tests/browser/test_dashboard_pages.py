"""The dashboard in headless Chromium against the run's stack: pages that change without a
reload as sagas run, a compensated saga's timeline in order, a dead letter replayed from the
page, and a dashboard killed mid-stream that catches up with nothing missing or doubled."""

import asyncio
import re

from playwright.async_api import Page, expect

from scripts.stack import Stack
from tests.browser.conftest import arrived, events_projected, marked, still_marked
from tests.clients.api import SagaClient
from tests.clients.database import sql
from tests.clients.processes import LogCursor, restarted_with

TIMEOUT_MS = 20_000


async def test_the_list_and_a_timeline_follow_a_saga_without_a_reload(
    page: Page, saga: SagaClient[Stack], stack: Stack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(5)
    await page.goto(f"{stack.config.dashboard_url}/?customer={customer}")
    await expect(page.locator("#saga-rows")).to_contain_text("No saga matches")
    await marked(page)

    order = saga.place_order(customer, (sku, 1, 700))

    row = page.locator("#saga-rows tr", has_text=order["order_id"][:8])
    await expect(row.locator(".badge")).to_have_text("confirmed", timeout=TIMEOUT_MS)
    assert await still_marked(page), "the list reloaded instead of updating"

    await row.locator("a.id").click()
    await expect(page.locator(".saga-head .badge")).to_have_text("confirmed")
    labels = await page.locator(".mark .label").all_text_contents()
    expected = ["OrderCreated", "PaymentSucceeded", "InventoryReserved", "OrderConfirmed"]
    if saga.orchestrated:  # the orchestrator's commands, each caused by the step before
        expected = ["OrderCreated", "ChargePayment", "PaymentSucceeded", "ReserveInventory"]
        expected += ["InventoryReserved", "OrderConfirmed"]
    assert labels[: len(expected)] == expected
    # An arrow into each message but the POST's: OrderCreated and, orchestrated, ChargePayment.
    started = 2 if saga.orchestrated else 1
    assert await page.locator("path.arrow").count() == len(expected) - started
    # The saga's trace id, as its events carried it (shared/tracing.py).
    [(trace_id,)] = sql(
        stack, "order", "SELECT substr(trace_context->>'traceparent', 4, 32) FROM orders "
        "WHERE order_id = %s", order["order_id"],
    )  # fmt: skip
    assert len(trace_id) == 32
    await expect(page.locator(".facts .trace")).to_have_text(trace_id)


async def test_a_compensated_saga_shows_the_charge_the_refund_and_the_rejection_in_order(
    page: Page, saga: SagaClient[Stack], stack: Stack
) -> None:
    customer, plenty, scarce = (
        saga.funded_customer(10_000),
        saga.stocked_sku(9),
        saga.stocked_sku(1),
    )
    order = saga.place_order(customer, (plenty, 1, 500), (scarce, 2, 1_000))
    await asyncio.to_thread(arrived, stack, order["order_id"])
    await page.goto(f"{stack.config.dashboard_url}/sagas/{order['order_id']}")
    await marked(page)

    await expect(page.locator(".saga-head .badge")).to_have_text("compensated", timeout=TIMEOUT_MS)
    assert await still_marked(page)
    marks = page.locator(".mark")
    kinds = {
        (await marks.nth(n).locator(".label").text_content()): await marks.nth(n).get_attribute(
            "class"
        )
        for n in range(await marks.count())
    }
    order_of = list(kinds)
    assert order_of.index("PaymentSucceeded") < order_of.index("InventoryFailed")
    assert order_of.index("InventoryFailed") < order_of.index("PaymentRefunded")
    assert "OrderRejected" in order_of
    assert "compensation" in str(kinds["PaymentRefunded"])
    assert "failure" in str(kinds["OrderRejected"]) and "forward" in str(kinds["PaymentSucceeded"])
    await expect(page.locator(".saga-head .reason")).to_have_text("out_of_stock")


async def test_a_dead_letter_appears_live_and_is_replayed_from_the_page(
    page: Page, saga: SagaClient[Stack], stack: Stack
) -> None:
    customer, sku = saga.funded_customer(10_000), saga.stocked_sku(5)
    await page.goto(f"{stack.config.dashboard_url}/dead-letters")
    await marked(page)
    log = LogCursor(stack, "payment")
    handler = "charge_on_command" if saga.orchestrated else "charge_for_order"
    with restarted_with(stack, "payment", FAULT_FAIL_HANDLER=f"{handler}:100"):
        order_id = saga.place_order(customer, (sku, 1, 300))["order_id"]
        await asyncio.to_thread(log.wait_for, f"order {order_id[:8]} | dead-lettered", 1, 20)

    row = page.locator("table.letters tr", has_text=order_id[:8])
    await expect(row).to_contain_text("4 attempt(s)", timeout=TIMEOUT_MS)
    assert await still_marked(page), "the dead letters reloaded instead of updating"
    await row.locator('input[name="chosen"]').check()
    await page.locator("button", has_text="Replay the selected").click()

    await expect(page.locator("h1")).to_have_text("Replay 1 message(s)?")
    await page.fill("#operator", "test-operator")
    await page.locator("button.danger").click()
    await expect(page.locator("h1")).to_have_text("Replayed 1 message(s)")

    await asyncio.to_thread(saga.wait_for_status, order_id, "CONFIRMED")
    await page.goto(f"{stack.config.dashboard_url}/dead-letters")
    log_rows = page.locator("table.log tr", has_text="test-operator")
    await expect(log_rows.first).to_contain_text(saga.charge_request[0])
    await expect(page.locator("table.letters tr", has_text=order_id[:8])).to_have_count(0)


async def test_a_dashboard_killed_mid_stream_catches_up_with_nothing_missing_or_doubled(
    page: Page, saga: SagaClient[Stack], stack: Stack
) -> None:
    customer, sku = saga.funded_customer(1_000_000), saga.stocked_sku(1_000)
    await page.goto(f"{stack.config.dashboard_url}/?customer={customer}")
    await marked(page)

    stack.kill("dashboard")
    orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(20)]
    for order_id in orders:
        await asyncio.to_thread(saga.wait_for_status, order_id, "CONFIRMED")
    stack.start("dashboard")
    await asyncio.to_thread(stack.wait_ready, "dashboard")

    # The open page reconnects by itself and shows every saga, with no reload.
    rows = page.locator("#saga-rows tr .badge", has_text="confirmed")
    await expect(rows).to_have_count(20, timeout=TIMEOUT_MS)
    assert await still_marked(page)
    # Every offset of the stream projected once, and the position right after the last.
    [(count, distinct, last)] = sql(
        stack, "dashboard",
        "SELECT count(*), count(DISTINCT stream_offset), max(stream_offset) FROM stream_messages",
    )  # fmt: skip
    [(next_offset,)] = sql(stack, "dashboard", "SELECT next_offset FROM stream_position")
    assert count == distinct
    assert next_offset == last + 1
    # Created, paid, reserved, confirmed; orchestrated, the charge and reserve commands too.
    assert events_projected(stack, orders) == [6 if saga.orchestrated else 4] * 20


def test_bad_input_gets_a_readable_4xx_page_or_json(stack: Stack) -> None:
    import httpx

    base = stack.config.dashboard_url
    cases = {
        "/sagas/not-an-id": 422,
        "/sagas/00000000-0000-0000-0000-000000000000": 404,
        "/api/sagas/00000000-0000-0000-0000-000000000000": 404,
        "/?q=%00": 422,
        "/api/sagas?status=LOST": 422,
        "/api/sagas?limit=100000": 422,
        "/dead-letters/payment/no-such-message": 404,
        "/dead-letters/nobody/x": 404,
    }
    for path, status in cases.items():
        response = httpx.get(base + path, timeout=10)
        assert response.status_code == status, (path, response.text)
        assert response.text and "Traceback" not in response.text
        if path.startswith("/api/"):
            assert response.json()["detail"], path
        else:
            assert re.search(r"<h1 class=\"error-code\">\d{3}</h1>", response.text), path
    refused = httpx.post(base + "/dead-letters/replay/confirm",
                         data={"chosen": "payment/gone", "operator": "me"}, timeout=10)  # fmt: skip
    assert refused.status_code == 404 and "any more" in refused.text
    unknown = httpx.post(base + "/api/dead-letters/replay",
                         json={"messages": ["a/0"], "operator": "me"}, timeout=10)  # fmt: skip
    assert unknown.status_code == 422 and "messages" in unknown.text, unknown.text
