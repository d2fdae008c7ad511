"""The two coordination styles measured side by side: `./saga bench --compare-modes`.

For each mode, on a stack of its own (one process of each service and relay, the same machine,
one after the other): the messages a happy saga publishes and the deliveries it takes (counted
in the outboxes and inboxes, not assumed), the idle latency of one order, completed sagas/s at
saturation, the CPU of the whole machine per saga there, and the latency at 50/s offered (the
issue's figure; near orchestration's ceiling on two cores) and at 25/s (far from both). One
Markdown table; the ratios are of the same run.
"""

import argparse
import asyncio
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from scripts.perf.bench import MACHINE, cpu_by_process, idle_latency, run_orders
from scripts.stack import Stack, StackConfig
from shared.system import SERVICE_NAMES, Mode


@dataclass
class Measured:
    mode: Mode
    published: float  # outbox rows per saga
    delivered: float  # inbox rows per saga
    idle_ms: float
    saturation: float
    cpu_ms: float
    p50: float
    p99: float
    p50_quarter: float  # at 25/s: latency where neither style is near its ceiling
    p99_quarter: float


def rows_per_service(config: StackConfig) -> tuple[int, int]:
    """Outbox and inbox rows in all three databases."""
    outbox = inbox = 0
    for service in SERVICE_NAMES:
        url = config.admin_database_url(service).replace("+psycopg", "")
        with psycopg.connect(url) as conn:
            outbox += conn.execute("SELECT count(*) FROM outbox").fetchone()[0]  # type: ignore[index]
            inbox += conn.execute("SELECT count(*) FROM inbox").fetchone()[0]  # type: ignore[index]
    return outbox, inbox


async def measure(stack: Stack, args: argparse.Namespace) -> Measured:
    urls = stack.config.base_urls()
    _, idle = await idle_latency(urls, args.idle_orders)
    await run_orders(urls, args.warm_up_orders, concurrency=128, rate=None)
    outbox, inbox = rows_per_service(stack.config)
    before = cpu_by_process(stack)
    saturated = await run_orders(urls, args.saturation_orders, concurrency=128, rate=None)
    after = cpu_by_process(stack)
    outbox_after, inbox_after = rows_per_service(stack.config)
    at_fifty = await run_orders(urls, int(50 * args.seconds), concurrency=1000, rate=50)
    at_25 = await run_orders(urls, int(25 * args.seconds), concurrency=1000, rate=25)
    orders = saturated.orders
    return Measured(
        mode=stack.config.mode,
        published=(outbox_after - outbox) / orders,
        delivered=(inbox_after - inbox) / orders,
        idle_ms=statistics.median(idle),
        saturation=saturated.throughput,
        cpu_ms=(after[MACHINE] - before[MACHINE]) * 1000 / orders,
        p50=at_fifty.percentile(0.5),
        p99=at_fifty.percentile(0.99),
        p50_quarter=at_25.percentile(0.5),
        p99_quarter=at_25.percentile(0.99),
    )


def compare(args: argparse.Namespace) -> None:
    results = []
    for mode in Mode:
        directory = Path(tempfile.mkdtemp(prefix=f"saga-bench-{mode}-"))
        config = StackConfig.isolated("sagabench", directory, mode=mode)
        print(f"{mode}: a stack of its own (logs in {config.log_dir})", flush=True)
        with Stack(config).running() as stack:
            results.append(asyncio.run(measure(stack, args)))
    print(
        "\n| mode | messages published per saga | deliveries per saga | idle, one order (ms) "
        "| sagas/s at saturation | machine CPU per saga (ms) | p50 / p99 at 50/s (ms) "
        "| p50 / p99 at 25/s (ms) |\n|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        print(
            f"| {r.mode} | {r.published:.1f} | {r.delivered:.1f} | {r.idle_ms:.0f} | "
            f"{r.saturation:.1f} | {r.cpu_ms:.1f} | {r.p50:.0f} / {r.p99:.0f} | "
            f"{r.p50_quarter:.0f} / {r.p99_quarter:.0f} |"
        )
    choreography, orchestration = results
    print(
        f"\norchestration against choreography, this run: "
        f"{orchestration.saturation / choreography.saturation:.2f} x the throughput, "
        f"{orchestration.cpu_ms / choreography.cpu_ms:.2f} x the CPU per saga, "
        f"{orchestration.p50 / choreography.p50:.2f} x the p50 at 50/s"
    )
