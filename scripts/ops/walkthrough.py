"""Helpers for the README walkthrough: seed, place an order and show the saga, redeliver.

    ./saga walkthrough seed                        alice (100.00), bob (5.00); shirt (50), mug (1)
    ./saga walkthrough order alice shirt:2:1500    place it, wait for the end, show the saga
    ./saga walkthrough order alice shirt:1:500 --no-wait
    ./saga walkthrough wait latest                   wait for an order (an id, or the newest) to end
    ./saga walkthrough redeliver latest --times 10   publish its OrderCreated again, same message_id
    ./saga walkthrough dashboard latest              the saga as the dashboard sees it, all services

Lines are SKU:QUANTITY:UNIT_PRICE_CENTS. The stack is the one `./saga up` runs (or the one the
SAGA_* variables name, see scripts/stack/config.py).
"""

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

import httpx

from scripts.arguments import at_least
from scripts.stack import StackConfig
from services.order.state import TERMINAL
from shared import broker
from shared.audit import STREAM_OFFSET_HEADER, read_audit
from shared.redelivery import copy_of
from shared.topology import AUDIT_STREAM, EVENTS_EXCHANGE


class Walkthrough:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.http = {
            service: httpx.Client(base_url=url, timeout=10)
            for service, url in config.base_urls().items()
        }
        self.dashboard_http = httpx.Client(timeout=10)

    def seed(self) -> None:
        for customer, cents in (("alice", 10_000), ("bob", 500)):
            balance = self._ok(
                self.http["payment"].post(
                    f"/accounts/{customer}/deposits", json={"amount_cents": cents}
                )
            )["balance_cents"]
            print(f"{customer}: balance {balance}")
        for sku, units in (("shirt", 50), ("mug", 1)):
            product = self._ok(
                self.http["inventory"].post(f"/products/{sku}/restock", json={"quantity": units})
            )
            print(f"{sku}: {product['available']} available")

    def order(self, customer: str, lines: list[str], wait: bool) -> None:
        items = []
        for line in lines:
            sku, quantity, price = line.split(":")
            items.append({"sku": sku, "quantity": int(quantity), "unit_price_cents": int(price)})
        order = self._ok(
            self.http["order"].post("/orders", json={"customer_id": customer, "items": items})
        )
        print(
            f"placed order {order['order_id']}: {order['total_cents']} for {customer}, "
            f"{order['status']}"
        )
        if wait:
            self.wait(order["order_id"])

    def resolve(self, order_id: str) -> str:
        if order_id != "latest":
            return order_id
        newest = self._ok(self.http["order"].get("/orders", params={"limit": 1}))["orders"]
        if not newest:
            raise SystemExit("no orders yet")
        return str(newest[0]["order_id"])

    def wait(self, order_id: str, within_seconds: float = 60) -> None:
        """Until the order is terminal and, orchestrated, its saga has ended too (its
        compensations answered); then show it."""
        order_id = self.resolve(order_id)
        deadline = time.monotonic() + within_seconds
        while (status := self._status(order_id)) is not None:
            if time.monotonic() > deadline:
                raise SystemExit(f"order {order_id} still {status} after {within_seconds:.0f} s")
            time.sleep(0.05)
        time.sleep(0.5)  # let the compensations that follow a terminal state land
        self.show(order_id)

    def _status(self, order_id: str) -> str | None:
        """What the order (or its saga) still is; None once both have ended."""
        order = self._ok(self.http["order"].get(f"/orders/{order_id}"))
        if order["status"] not in TERMINAL:
            return str(order["status"])
        saga = self.http["order"].get(f"/sagas/{order_id}")
        if saga.status_code == 200 and saga.json()["status"] in ("RUNNING", "COMPENSATING"):
            return f"{order['status']}, its saga {saga.json()['status']}"
        return None

    def show(self, order_id: str) -> None:
        order = self._ok(self.http["order"].get(f"/orders/{order_id}"))
        history = self._ok(self.http["order"].get(f"/orders/{order_id}/history"))["transitions"]
        reason = f" ({order['reason']})" if order["reason"] else ""
        print(f"order {order_id} {order['status']}{reason}")
        print("  history:  " + " -> ".join(t["to_status"] for t in history))
        saga = self.http["order"].get(f"/sagas/{order_id}")
        if saga.status_code == 200:  # orchestrated: the orchestrator's steps and what they sent
            print("  saga:     " + " -> ".join(_step(t) for t in saga.json()["history"]))
        # Each service answers for itself; one that is down (killed on purpose) says so.
        try:
            payments = self._ok(
                self.http["payment"].get("/payments", params={"order_id": order_id})
            )
            charges = ", ".join(str(c["amount_cents"]) for c in payments["charges"]) or "none"
            refunds = ", ".join(f"{r['amount_cents']} ({r['reason']})" for r in payments["refunds"])
            print(f"  payment:  charged {charges}; refunded {refunds or 'none'}")
        except httpx.TransportError:
            print("  payment:  not answering")
        try:
            reservations = self._ok(
                self.http["inventory"].get("/reservations", params={"order_id": order_id})
            )["reservations"]
            held = [
                f"{r['status']} " + ", ".join(f"{i['quantity']} x {i['sku']}" for i in r["items"])
                for r in reservations
            ]
            print("  stock:    " + ("; ".join(held) or "nothing reserved"))
        except httpx.TransportError:
            print("  stock:    inventory not answering")

    async def redeliver(self, order_id: str, times: int) -> None:
        """Find the order's OrderCreated in the audit stream and publish it again, as is."""
        order_id = self.resolve(order_id)
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
        connection = await broker.connect(self.config.amqp_url)
        async with connection:
            found = next(
                (
                    message
                    for message in await read_audit(connection)
                    if message.type == "OrderCreated" and message.correlation_id == order_id
                ),
                None,
            )
            if found is None:
                raise SystemExit(f"no OrderCreated for {order_id} in {AUDIT_STREAM}")
            publisher = await connection.channel(publisher_confirms=True)
            exchange = await publisher.get_exchange(EVENTS_EXCHANGE)
            for _ in range(times):
                await exchange.publish(
                    copy_of(found, without=[STREAM_OFFSET_HEADER]), routing_key="order.created"
                )
        print(f"published OrderCreated {found.message_id} of order {order_id} {times} more times")

    def dashboard(self, order_id: str, within_seconds: float = 15) -> None:
        """The saga as the dashboard's read model has it, once it has settled: every service's
        part, which the order service alone never learns (the refund, the release)."""
        order_id = self.resolve(order_id)
        url = f"{self.config.dashboard_url}/api/sagas/{order_id}"
        deadline = time.monotonic() + within_seconds
        while True:
            reply = self.dashboard_http.get(url)
            saga = reply.json() if reply.status_code == 200 else None
            if saga and saga["status"] != "IN_FLIGHT" and saga["waiting_on"] == "nothing":
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the dashboard has not settled saga {order_id} yet")
            time.sleep(0.1)
        reason = f" ({saga['reason']})" if saga["reason"] else ""
        print(f"saga {order_id} {saga['status']}{reason} in the dashboard")
        for lane in self.http:  # each service's events, in causal order
            kinds = [e["type"] for e in saga["events"] if e["producer"] == lane]
            print(f"  {lane + ':':<10} {', '.join(kinds) or 'nothing'}")
        print(f"  timeline:  {self.config.dashboard_url}/sagas/{order_id}")

    @staticmethod
    def _ok(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise SystemExit(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text}"
            )
        return response.json()


def _step(transition: dict[str, Any]) -> str:
    """`reserve (sent reserve)`, `COMPENSATED`: one step of an orchestrated saga."""
    status, step = transition["to_status"], transition["to_step"]
    where = status if step == "done" else step
    return f"{where} (sent {', '.join(transition['sent'])})" if transition["sent"] else where


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="./saga walkthrough",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("seed")
    order = commands.add_parser("order")
    order.add_argument("customer")
    order.add_argument("lines", nargs="+", metavar="SKU:QUANTITY:UNIT_PRICE_CENTS")
    order.add_argument("--no-wait", action="store_true")
    for name in ("wait", "show", "redeliver", "dashboard"):
        command = commands.add_parser(name)
        command.add_argument("order_id", help="an order id, or `latest`")
        if name == "redeliver":
            command.add_argument("--times", type=at_least(1), default=10)
    args = parser.parse_args()
    walkthrough = Walkthrough(StackConfig.from_env())
    try:
        if args.command == "seed":
            walkthrough.seed()
        elif args.command == "order":
            if any(line.count(":") != 2 for line in args.lines):
                parser.error("each line is SKU:QUANTITY:UNIT_PRICE_CENTS, e.g. shirt:2:1500")
            walkthrough.order(args.customer, args.lines, wait=not args.no_wait)
        elif args.command == "wait":
            walkthrough.wait(args.order_id)
        elif args.command == "show":
            walkthrough.show(walkthrough.resolve(args.order_id))
        elif args.command == "dashboard":
            walkthrough.dashboard(args.order_id)
        else:
            asyncio.run(walkthrough.redeliver(args.order_id, args.times))
    except httpx.TransportError as exc:
        print(f"cannot reach the stack ({exc}); is it up? ./saga up --detach", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
