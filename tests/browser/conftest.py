"""The dashboard's pages in a real browser: Debian's Chromium, headless, driven by Playwright
for Python (its own browser download cannot work here, so `executable_path` names Debian's).

Without Chromium every test here is skipped with a line saying why (`-ra`), and the session's
header says so too (tests/conftest.py).
"""

import os
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from scripts.stack import Stack
from tests.clients.database import sql
from tests.polling import wait_until

CHROMIUM = os.environ.get("SAGA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling home, refused here.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def chromium_missing() -> str:
    return "" if os.path.exists(CHROMIUM) else f"no Chromium at {CHROMIUM} (.ci/run installs it)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if missing := chromium_missing():
        for item in items:
            if "tests/browser/" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=f"browser tests: {missing}"))


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    opened = await context.new_page()
    try:
        yield opened
    finally:
        await context.close()


async def marked(page: Page) -> None:
    """Mark the page's window: the mark survives live updates and is gone after a reload."""
    await page.evaluate("window.__notReloaded = true")


async def still_marked(page: Page) -> bool:
    return bool(await page.evaluate("window.__notReloaded === true"))


def arrived(stack: Stack, order_id: str) -> None:
    """Wait until the dashboard knows the saga: its page is a 404 until the first event of it
    is projected, and a 404 page does not wait for the saga to come."""
    url = f"{stack.config.dashboard_url}/api/sagas/{order_id}"
    wait_until(lambda: httpx.get(url, timeout=5).status_code == 200, 20, f"{order_id} projected")


def events_projected(stack: Stack, orders: list[str]) -> list[int]:
    """How many distinct events of each order the dashboard projected (repeats not counted),
    sorted: four per confirmed saga when nothing is missing or doubled."""
    rows = sql(
        stack, "dashboard",
        "SELECT order_id::text, count(*) FROM stream_messages WHERE kind = 'event' "
        "AND NOT repeat AND order_id::text = ANY(%s) GROUP BY 1", orders,
    )  # fmt: skip
    return sorted(count for _, count in rows)
