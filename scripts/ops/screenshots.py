"""The README's pictures of the dashboard, taken for real.

    ./saga screenshots [--out docs/img] [--mode orchestration]

On a stack of its own it runs a saga down each path (confirmed, declined, out of stock and
refunded, retried, dead-lettered, redelivered, stuck), then opens the dashboard in headless
Chromium (Debian's, driven by Playwright) and saves a picture of each page. With
`--mode orchestration`, one picture: the out-of-stock saga's timeline as the orchestrator runs
it, its commands and their replies (dashboard-orchestrated.png).
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
from shared.system import Mode

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


def run_orchestrated(walk: Walkthrough) -> dict[str, str]:
    """The out-of-stock saga, orchestrated: charged, refused its stock, refunded."""
    walk.seed()
    walk.order("alice", ["shirt:1:1500"], wait=True)
    walk.order("alice", ["shirt:1:500", "mug:2:1000"], wait=True)
    return {"dashboard-orchestrated": f"/sagas/{walk.resolve('latest')}"}


def choreographed_pages(sagas: dict[str, str]) -> dict[str, str]:
    return {
        "dashboard-sagas": "/",
        "dashboard-compensated": f"/sagas/{sagas['compensated']}",
        "dashboard-retried": f"/sagas/{sagas['retried']}",
        "dashboard-stuck": "/stuck",
        "dashboard-dead-letters": "/dead-letters",
    }


async def take(base: str, out: Path, pages: dict[str, str]) -> list[Path]:
    """A picture of each page (name: path), after its first live refresh."""
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
    parser.add_argument(
        "--mode", choices=list(Mode), default=Mode.CHOREOGRAPHY,
        help="orchestration: the orchestrated saga's timeline alone",
    )  # fmt: skip
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}: apt-get install chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    config = StackConfig.isolated(
        "sagashots", Path(tempfile.mkdtemp(prefix="saga-shots-")),
        env={"RETRY_DELAYS_MS": "[200, 500, 1000]"},
        process_env={"dashboard": {"STALE_AFTER_SECONDS": "5"}},
        mode=Mode(args.mode),
    )  # fmt: skip
    with Stack(config).running() as stack:
        walk = Walkthrough(config)
        if config.mode is Mode.ORCHESTRATION:
            pages = run_orchestrated(walk)
        else:
            pages = choreographed_pages(run_sagas(stack, walk))
        for path in asyncio.run(take(config.dashboard_url, args.out, pages)):
            print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
