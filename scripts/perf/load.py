"""Place many orders with a realistic mix and measure them.

    ./saga load --orders 1000 --concurrency 50 [--rate 100] [--seed 7] [--json]

It creates funded customers and stocked skus (from the seed), places orders (most succeed,
some customers are short of funds, some skus run out, some orders the customer cancels), each
with an Idempotency-Key so a POST that met a dead order service is retried without doubling
the order; waits until every order is terminal; then prints throughput (sagas/s), latency
p50/p95/p99 from the POST to the terminal state (as the order's own timestamps record it) and
the outcome counts. The stack is the one `./saga up` runs, or the one the SAGA_* settings name
(SAGA_ORDER_HOST_PORT..., SAGA_TARGET=compose: scripts/stack/config.py); ORDER_URL, PAYMENT_URL
and INVENTORY_URL name any other.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from scripts.arguments import above, at_least
from scripts.stack import StackConfig
from services.order.state import IN_FLIGHT, TERMINAL
from shared.system import SERVICE_NAMES

# A service killed or frozen mid-request: refused, reset, cut off mid-body, or timed out.
RETRYABLE = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class Refused(Exception):
    """A service answered with an error status."""


@dataclass(frozen=True)
class Reply:
    """An HTTP response, read in full."""

    status_code: int
    body: bytes
    url: str

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            detail = self.body.decode(errors="replace")[:300]
            raise Refused(f"{self.url} answered {self.status_code}: {detail}")


@dataclass
class Mix:
    customers: int = 40
    poor_ratio: float = 0.1  # customers who can afford almost nothing
    skus: int = 20
    scarce_ratio: float = 0.2  # skus with a handful of units: contention, out of stock
    scarce_units: int = 5
    cancel_ratio: float = 0.05  # orders the customer cancels right after placing them


@dataclass
class Result:
    orders: int
    wall_seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.orders / self.wall_seconds if self.wall_seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    @staticmethod
    def latency_ms(order: dict[str, Any]) -> float:
        """From the order's creation to its last transition, by the order service's clock."""
        return (_at(order["updated_at"]) - _at(order["created_at"])) * 1000

    @classmethod
    def of(cls, final: dict[str, dict[str, Any]], order_ids: list[str]) -> "Result":
        """Summarize the final states; times come from the order service's own timestamps,
        from the first order's creation to the last terminal transition."""
        created = [_at(order["created_at"]) for order in final.values()]
        ended = [_at(order["updated_at"]) for order in final.values()]
        wall = max(ended) - min(created) if final else 0.0  # none: a run stopped at once
        result = cls(orders=len(final), wall_seconds=wall, order_ids=order_ids)
        for order in final.values():
            result.outcomes[order["status"]] += 1
            if order["reason"]:
                result.reasons[order["reason"]] += 1
            result.latencies_ms.append(cls.latency_ms(order))
        return result

    def as_dict(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "wall_seconds": round(self.wall_seconds, 3),
            "sagas_per_second": round(self.throughput, 1),
            "latency_ms": {f"p{p}": round(self.percentile(p / 100), 1) for p in (50, 95, 99)},
            "outcomes": dict(self.outcomes),
            "reasons": dict(self.reasons),
        }


class Load:
    def __init__(
        self,
        urls: dict[str, str],
        seed: int,
        mix: Mix,
        timeout: float = 10.0,
        order_copies: Sequence[str] = (),
    ) -> None:
        """`order_copies`: the addresses of more order services on the same database; POSTs
        go to each in turn."""
        self.urls = urls
        self._posts_to = itertools.cycle([urls["order"], *order_copies])
        self.random = random.Random(seed)
        self.mix = mix
        self.run = uuid.UUID(int=self.random.getrandbits(128)).hex[:8] + uuid.uuid4().hex[:4]
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self.customers: list[str] = []
        self.skus: list[str] = []

    @property
    def session(self) -> aiohttp.ClientSession:
        # aiohttp, not httpx, because the generator shares the cores with the stack it loads:
        # measured here, httpx's AsyncClient took 5 to 7 ms of CPU per request with 32 to 128
        # in flight, aiohttp's session 0.3 ms. Created on first use, inside the event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=200),
            )
        return self._session

    async def request(self, method: str, url: str, attempts: int = 60, **kwargs: Any) -> Reply:
        """A request that outlives a killed or restarting service: retried with a pause on
        connection errors and 503s. POSTs carry an Idempotency-Key, so a retry is safe."""
        for attempt in range(attempts):
            try:
                async with self.session.request(method, url, **kwargs) as answer:
                    response = Reply(answer.status, await answer.read(), url)
                if response.status_code != 503:
                    return response
            except RETRYABLE:
                if attempt == attempts - 1:
                    raise
            await asyncio.sleep(0.25)
        return response

    async def seed(self) -> None:
        mix = self.mix
        for index in range(mix.customers):
            customer = f"{self.run}-c{index}"
            cents = 100 if index < mix.customers * mix.poor_ratio else 1_000_000_000
            await self.request("POST", f"{self.urls['payment']}/accounts/{customer}/deposits",
                               json={"amount_cents": cents})  # fmt: skip
            self.customers.append(customer)
        for index in range(mix.skus):
            sku = f"{self.run}-s{index}"
            units = mix.scarce_units if index < mix.skus * mix.scarce_ratio else 1_000_000
            await self.request("POST", f"{self.urls['inventory']}/products/{sku}/restock",
                               json={"quantity": units})  # fmt: skip
            self.skus.append(sku)

    def order_body(self) -> dict[str, Any]:
        lines = self.random.sample(self.skus, self.random.randint(1, 3))
        return {
            "customer_id": self.random.choice(self.customers),
            "items": [
                {"sku": sku, "quantity": self.random.randint(1, 3),
                 "unit_price_cents": self.random.randint(100, 5_000)}
                for sku in lines
            ],
        }  # fmt: skip

    async def place(self, body: dict[str, Any], cancel: bool) -> str:
        response = await self.request(
            "POST", f"{next(self._posts_to)}/orders", json=body,
            headers={"Idempotency-Key": f"{self.run}-{uuid.uuid4().hex}"},
        )  # fmt: skip
        response.raise_for_status()
        order_id = str(response.json()["order_id"])
        if cancel:
            await asyncio.sleep(self.random.uniform(0, 0.2))
            await self.request("POST", f"{self.urls['order']}/orders/{order_id}/cancel")
        return order_id

    async def wait_terminal(
        self, order_ids: list[str], within_seconds: float, progress: Progress
    ) -> dict[str, dict[str, Any]]:
        """Poll the orders not yet terminal until all are; return each one's final state."""
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + within_seconds
        task = progress.add_task("waiting for terminal states", total=len(order_ids))
        lookups = asyncio.Semaphore(20)

        async def look(order_id: str) -> None:
            async with lookups:
                response = await self.request("GET", f"{self.urls['order']}/orders/{order_id}")
            if response.status_code == 200 and response.json()["status"] in TERMINAL:
                done[order_id] = response.json()

        while len(done) < len(order_ids):
            if time.monotonic() > deadline:
                missing = len(order_ids) - len(done)
                raise TimeoutError(f"{missing} orders not terminal after {within_seconds:.0f} s")
            await asyncio.gather(*(look(i) for i in order_ids if i not in done))
            progress.update(task, completed=len(done))
            if len(done) < len(order_ids):
                await asyncio.sleep(0.5)
        return done

    async def run_load(
        self,
        orders: int,
        concurrency: int,
        rate: float | None,
        within_seconds: float = 300,
        show_progress: bool = False,
        alone: bool = False,
        stop: asyncio.Event | None = None,
    ) -> Result:
        """Seed, place `orders` (at most `concurrency` at once; at `rate` per second if given,
        an open loop), wait until each is terminal and sum them up.

        `alone`: the stack runs nothing else, so the orders are read back by listing the ones
        still in flight instead of polling each, which would load the very service measured
        (scripts/perf/bench.py). `stop`: once set, no more orders are placed, and the result
        is of those placed so far (a soak stopped early)."""
        await self.seed()
        plan = [
            (self.order_body(), self.random.random() < self.mix.cancel_ratio) for _ in range(orders)
        ]
        in_flight = asyncio.Semaphore(concurrency)
        order_ids: list[str] = []
        with Progress(disable=not show_progress, transient=True) as progress:
            placing = progress.add_task("placing orders", total=orders)
            started = time.monotonic()

            async def one(index: int, body: dict[str, Any], cancel: bool) -> None:
                if rate:  # open loop: the index-th order leaves at index / rate seconds
                    await _until(started + index / rate, stop)
                async with in_flight:
                    if stop is not None and stop.is_set():
                        return
                    order_ids.append(await self.place(body, cancel))
                progress.advance(placing)

            await asyncio.gather(*(one(i, body, cancel) for i, (body, cancel) in enumerate(plan)))
            if alone:
                final = await self.read_back_when_idle(set(order_ids))
            else:
                final = await self.wait_terminal(order_ids, within_seconds, progress)
        return Result.of(final, order_ids)

    async def _any(self, orders_url: str, status: str) -> bool:
        reply = await self.request("GET", orders_url, params={"status": status, "limit": 1})
        return bool(reply.json()["orders"])

    async def read_back_when_idle(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """Once no order is in flight, every order of `ids` in its final state."""
        orders = f"{self.urls['order']}/orders"
        while True:
            busy = [await self._any(orders, status) for status in IN_FLIGHT]
            if not any(busy):
                break
            await asyncio.sleep(0.2)
        final: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = (
                await self.request("GET", orders, params={"limit": 1000, "offset": offset})
            ).json()["orders"]
            final |= {o["order_id"]: o for o in page if o["order_id"] in ids}
            # Newest first: once every order of this run is read, the rest is older history.
            if len(page) < 1000 or len(final) == len(ids):
                return final
            offset += 1000

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _until(moment: float, stop: asyncio.Event | None) -> None:
    """Sleep until `moment` (of time.monotonic), or until `stop` is set, if sooner."""
    delay = max(0.0, moment - time.monotonic())
    if stop is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


def _at(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def print_summary(result: Result, console: Console) -> None:
    table = Table(
        title=f"{result.orders} sagas in {result.wall_seconds:.1f} s: "
        f"{result.throughput:.1f} sagas/s"
    )
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for outcome, count in sorted(result.outcomes.items()):
        table.add_row(outcome, str(count))
    for reason, count in sorted(result.reasons.items()):
        table.add_row(f"  reason {reason}", str(count))
    console.print(table)
    console.print(
        "latency POST to terminal: "
        + ", ".join(f"p{p} {result.percentile(p / 100):.0f} ms" for p in (50, 95, 99))
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="./saga load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=at_least(1), default=500)
    parser.add_argument(
        "--concurrency", type=at_least(1), default=32, help="orders in flight at once"
    )
    parser.add_argument("--rate", type=above(0), default=None, help="orders per second (open loop)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cancel-ratio", type=float, default=Mix.cancel_ratio)
    parser.add_argument(
        "--timeout", type=above(0), default=300, help="seconds to wait for terminal states"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    urls = StackConfig.from_env().base_urls() | {
        name: url for name in SERVICE_NAMES if (url := os.environ.get(f"{name.upper()}_URL"))
    }
    console = Console(stderr=args.json)
    load = Load(urls, args.seed, Mix(cancel_ratio=args.cancel_ratio))

    async def go() -> Result:
        try:
            return await load.run_load(
                args.orders, args.concurrency, args.rate, args.timeout, console.is_terminal
            )
        finally:
            await load.close()

    try:
        result = asyncio.run(go())
    except (aiohttp.ClientError, Refused, TimeoutError) as exc:
        console.print(f"[red]load failed:[/red] {exc} (is the stack up? ./saga up --detach)")
        return 1
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_summary(result, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
