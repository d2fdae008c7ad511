"""Latency and throughput of the happy path, on a stack of its own (own databases, vhost, ports).

    ./saga bench [--orders 50] [--concurrent 100]

Prints the median and p95 time from POST /orders to CONFIRMED for orders placed one at a time
on an idle stack (as the client sees it, polling every 2 ms, and as the order's own history
records it), and the wall time for a burst of concurrent orders to all reach CONFIRMED.
"""

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

from scripts.stack import SERVICES, Stack, StackConfig


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _confirmed(client: httpx.AsyncClient, order_id: str, poll: float) -> dict:
    while True:
        order = (await client.get(f"/orders/{order_id}")).json()
        if order["status"] in ("CONFIRMED", "REJECTED", "CANCELLED"):
            if order["status"] != "CONFIRMED":
                raise RuntimeError(f"order {order_id} ended {order['status']} ({order['reason']})")
            return order
        await asyncio.sleep(poll)


async def _server_side_ms(client: httpx.AsyncClient, order_id: str) -> float:
    transitions = (await client.get(f"/orders/{order_id}/history")).json()["transitions"]
    at = {t["to_status"]: datetime.fromisoformat(t["at"]) for t in transitions}
    return (at["CONFIRMED"] - at["PENDING"]).total_seconds() * 1000


async def run(stack: Stack, orders: int, concurrent: int) -> None:
    config = stack.config
    customer, sku = f"bench-{uuid.uuid4().hex[:8]}", f"sku-{uuid.uuid4().hex[:8]}"
    line = [{"sku": sku, "quantity": 1, "unit_price_cents": 100}]
    async with (
        httpx.AsyncClient(base_url=config.base_url("order"), timeout=30) as order_api,
        httpx.AsyncClient(base_url=config.base_url("payment"), timeout=30) as payment_api,
        httpx.AsyncClient(base_url=config.base_url("inventory"), timeout=30) as inventory_api,
    ):
        await payment_api.post(f"/accounts/{customer}/deposits", json={"amount_cents": 10**9})
        await inventory_api.post(f"/products/{sku}/restock", json={"quantity": 10**6})
        body = {"customer_id": customer, "items": line}

        for _ in range(5):  # warm up connections and prepared statements
            order_id = (await order_api.post("/orders", json=body)).json()["order_id"]
            await _confirmed(order_api, order_id, 0.002)

        client_ms, server_ms = [], []
        for _ in range(orders):
            started = time.perf_counter()
            order_id = (await order_api.post("/orders", json=body)).json()["order_id"]
            await _confirmed(order_api, order_id, 0.002)
            client_ms.append((time.perf_counter() - started) * 1000)
            server_ms.append(await _server_side_ms(order_api, order_id))
            await asyncio.sleep(0.05)  # idle between orders

        started = time.perf_counter()
        posted = await asyncio.gather(
            *(order_api.post("/orders", json=body) for _ in range(concurrent))
        )
        await asyncio.gather(
            *(_confirmed(order_api, response.json()["order_id"], 0.05) for response in posted)
        )
        burst = time.perf_counter() - started

    print(f"one order at a time, idle stack ({orders} orders), POST to CONFIRMED:")
    print(
        f"  client-observed  median {statistics.median(client_ms):6.1f} ms"
        f"   p95 {_percentile(client_ms, 0.95):6.1f} ms   min {min(client_ms):6.1f} ms"
    )
    print(
        f"  order history    median {statistics.median(server_ms):6.1f} ms"
        f"   p95 {_percentile(server_ms, 0.95):6.1f} ms   min {min(server_ms):6.1f} ms"
    )
    print(f"{concurrent} concurrent orders: all CONFIRMED in {burst:.2f} s wall time")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=50, help="sequential orders to time")
    parser.add_argument("--concurrent", type=int, default=100, help="orders in the burst")
    args = parser.parse_args()
    run_id = uuid.uuid4().hex[:8]
    stack = Stack(
        StackConfig(
            database_prefix=f"sagabench_{run_id}",
            vhost=f"saga-bench-{run_id}",
            ports={service: _free_port() for service in SERVICES},
            var_dir=Path(tempfile.mkdtemp(prefix="saga-bench-")),
        )
    )
    print(f"starting a stack of its own (logs in {stack.config.log_dir})")
    stack.prepare()
    try:
        stack.start()
        stack.wait_ready()
        asyncio.run(run(stack, args.orders, args.concurrent))
    finally:
        stack.stop(*list(stack.processes))
        stack.drop_databases()
        stack.delete_vhost()


if __name__ == "__main__":
    main()
