"""The README's pictures of the dashboard, taken for real.

    ./saga screenshots [--out docs/img]

On a stack of its own it runs a saga down each path (confirmed, declined, out of stock and
refunded, retried, dead-lettered, redelivered, stuck), then opens the dashboard in headless
Chromium (Debian's, driven by Playwright) and saves a picture of each page.
"""

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

from scripts.ops.walkthrough import Walkthrough
from scripts.stack import Stack, StackConfig
from scripts.stack.config import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def run_sagas(stack: Stack, walk: Walkthrough) -> dict[str, str]:
    """A saga down each path; the order id of each, by what it shows."""
    walk.seed()
    for _ in range(4):
        walk.order("alice", ["shirt:1:1500"], wait=True)
    walk.order("bob", ["shirt:1:1500"], wait=True)
    walk.order("alice", ["shirt:1:500", "mug:2:1000"], wait=True)
    compensated = walk.resolve("latest")
    stack.stop("payment")
    stack.start("payment", FAULT_FAIL_HANDLER="charge_for_order:2")
    stack.wait_ready("payment")
    walk.order("alice", ["shirt:2:700"], wait=True)
    retried = walk.resolve("latest")
    asyncio.run(walk.redeliver(retried, 2))
    stack.stop("payment")
    stack.start("payment", FAULT_FAIL_HANDLER="charge_for_order:100")
    stack.wait_ready("payment")
    walk.order("alice", ["mug:1:900"], wait=False)
    time.sleep(3)  # three quick retries, then the DLQ
    stack.stop("payment")
    stack.start("payment")
    stack.wait_ready("payment")
    stack.kill("inventory")
    walk.order("alice", ["shirt:3:400"], wait=False)
    time.sleep(7)  # quiet for longer than the dashboard calls stale
    return {"compensated": compensated, "retried": retried}


async def take(base: str, out: Path, sagas: dict[str, str]) -> list[Path]:
    pages = {
        "dashboard-sagas": "/",
        "dashboard-compensated": f"/sagas/{sagas['compensated']}",
        "dashboard-retried": f"/sagas/{sagas['retried']}",
        "dashboard-stuck": "/stuck",
        "dashboard-dead-letters": "/dead-letters",
    }
    saved = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS
        )
        page = await browser.new_page(viewport={"width": 1360, "height": 860})
        for name, path in pages.items():
            await page.goto(base + path)
            await page.wait_for_timeout(1500)  # the first live refresh lands
            saved.append(out / f"{name}.png")
            await page.screenshot(path=str(saved[-1]), full_page=True)
        await browser.close()
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="./saga screenshots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}: apt-get install chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    config = StackConfig.isolated(
        "sagashots", Path(tempfile.mkdtemp(prefix="saga-shots-")),
        env={"RETRY_DELAYS_MS": "[200, 500, 1000]"},
        process_env={"dashboard": {"STALE_AFTER_SECONDS": "5"}},
    )  # fmt: skip
    with Stack(config).running() as stack:
        sagas = run_sagas(stack, Walkthrough(config))
        for path in asyncio.run(take(config.dashboard_url, args.out, sagas)):
            print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
