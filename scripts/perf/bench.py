"""The benchmark: latency and throughput of the saga, and the ceiling of the bare transport.

    ./saga bench [--saturation-orders 1500] [--seconds 15] [--mode orchestration]
    ./saga bench --compare-modes     choreography and orchestration in one table
    ./saga bench --processes 2       two processes of every service and relay

On a stack of its own (own databases, vhost and ports; one process of each service and relay,
or `--processes 2` of each, the POSTs spread over the order services) it measures, and prints
as a Markdown table:
1. POST to CONFIRMED for one order at a time on an idle stack (client-observed, polling);
2. completed sagas/s at saturation (closed loop, many orders in flight), after a warm-up, and
   how many units of work each service committed per transaction meanwhile;
3. the bare transport: an aio-pika publish-and-consume loop doing one database transaction per
   message (as a consumer does), in messages/s; a saga costs four such deliveries. Saturation
   and the bare transport alternate, `--rounds` times: each round's ratio is measured seconds
   apart, so that a machine whose speed drifts moves both sides of it;
4. latency p50/p95/p99 from POST to CONFIRMED at 25%, 50% and 75% of the median saturation,
   and at 50/s offered (open loop, from the orders' own timestamps);
5. the CPU cost of one statement through SQLAlchemy's async `execute` and on psycopg, as the
   write path runs it, and of a connection checkout from each one's pool;
6. where the time goes: CPU per saga of every process at saturation, and of the whole machine
   (from /proc).

`--export-traces` runs the stack exporting its spans over OTLP/HTTP to a receiver of the
bench's own that counts them and answers at once (scripts/stack/traces.py): against a run
without it, what exporting costs. Without it the processes propagate trace context and make
their spans, but export nothing (shared/tracing.py).
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aio_pika
import aiohttp
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from scripts.arguments import above, at_least
from scripts.perf import history
from scripts.perf.load import Load, Mix, Result
from scripts.stack import Stack, StackConfig
from scripts.stack.instances import free_port
from scripts.stack.traces import TraceReceiver
from services.order.state import TERMINAL
from shared.db import Database
from shared.inbox import RECORD
from shared.system import PROCESSES, RELAYS, SERVICE_NAMES, Mode

MACHINE = "the whole machine (/proc/stat)"
HAPPY = Mix(customers=20, poor_ratio=0, scarce_ratio=0, cancel_ratio=0)
# OrderCreated, PaymentSucceeded (twice: order, inventory), InventoryReserved.
DELIVERIES_PER_SAGA = 4


async def idle_latency(urls: dict[str, str], orders: int) -> tuple[list[float], list[float]]:
    """POST to CONFIRMED, one order at a time: as the client sees it (polling every 5 ms, which
    costs the stack some CPU of its own) and by the order's own timestamps."""
    load = Load(urls, seed=1, mix=HAPPY)
    await load.seed()
    client, server = [], []
    try:
        for index in range(orders + 5):  # five to warm up
            started = time.perf_counter()
            order_id = await load.place(load.order_body(), cancel=False)
            url = f"{urls['order']}/orders/{order_id}"
            while True:  # polling, as a client would
                order = (await load.request("GET", url)).json()
                if order["status"] in TERMINAL:
                    break
                await asyncio.sleep(0.005)
            if index >= 5:
                client.append((time.perf_counter() - started) * 1000)
                server.append(Result.latency_ms(order))
            await asyncio.sleep(0.05)
    finally:
        await load.close()
    return client, server


async def run_orders(
    urls: dict[str, str],
    orders: int,
    concurrency: int,
    rate: float | None,
    order_copies: Sequence[str] = (),
) -> Result:
    """Place happy-path orders on the bench's own stack and read them back once it is idle;
    the POSTs spread over the order service's copies, if it runs several."""
    load = Load(urls, seed=orders, mix=HAPPY, order_copies=order_copies)
    try:
        return await load.run_load(orders, concurrency, rate, alone=True)
    finally:
        await load.close()


async def transport_ceiling(
    amqp_url: str, database_url: str, messages: int, prefetch: int
) -> float:
    """Messages/s through a quorum queue, each consumed in its own database transaction."""
    database = Database(database_url, pool_size=prefetch)
    await database.open()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            f"bench.transport.{uuid.uuid4().hex[:6]}",
            durable=True,
            arguments={"x-queue-type": "quorum"},
        )
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=prefetch)
        done = asyncio.Event()
        count = 0

        async def consume(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            async with database.connect() as sql:
                await sql.scalar(
                    RECORD,
                    message_id=uuid.UUID(message.message_id),
                    message_type="Bench",
                    saga=message.message_id,
                )
                await sql.connection.commit()
            await message.ack()
            count += 1
            if count == messages:
                done.set()

        await (await consuming.get_queue(queue.name)).consume(consume)
        started = time.perf_counter()
        for batch in range(0, messages, 100):
            await asyncio.gather(*(
                channel.default_exchange.publish(
                    aio_pika.Message(b"{}", message_id=str(uuid.uuid4()),
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue.name,
                )
                for _ in range(min(100, messages - batch))
            ))  # fmt: skip
        await asyncio.wait_for(done.wait(), 300)
        rate = messages / (time.perf_counter() - started)
        await queue.delete(if_unused=False, if_empty=False)
        return rate
    finally:
        await connection.close()
        await database.close()


async def statement_costs(database_url: str, repeats: int = 2000) -> dict[str, float]:
    """Microseconds, one at a time: a statement through SQLAlchemy's async `execute` and on a
    psycopg connection, as the write path runs it; and a checkout and return of a connection
    from SQLAlchemy's async pool and from the psycopg pool (docs/DESIGN.md, decision 15)."""
    database = Database(database_url, pool_size=1)
    await database.open()
    query = "SELECT message_id FROM inbox WHERE message_id = %(message_id)s"
    as_text = sa.text(query.replace("%(message_id)s", ":message_id"))

    async def sqlalchemy_statement() -> None:
        await conn.execute(as_text, {"message_id": uuid.uuid4()})

    async def psycopg_statement() -> None:
        await sql.scalar(query, message_id=uuid.uuid4())

    async def sqlalchemy_checkout() -> None:
        async with database.engine.connect() as pooled:
            await pooled.get_raw_connection()  # the psycopg connection, as the write path needs

    async def psycopg_checkout() -> None:
        async with database.connect():
            pass

    async def timed(step: Callable[[], Awaitable[None]]) -> float:
        for _ in range(repeats // 10):  # warm-up: connections made, statements prepared
            await step()
        started = time.process_time()
        for _ in range(repeats):
            await step()
        return (time.process_time() - started) / repeats * 1e6

    try:
        async with database.engine.connect() as conn:
            sqlalchemy = await timed(sqlalchemy_statement)
        async with database.connect(autocommit=True) as sql:
            driver = await timed(psycopg_statement)
        return {
            "statement, SQLAlchemy execute": sqlalchemy,
            "statement, psycopg": driver,
            "checkout and return, SQLAlchemy pool": await timed(sqlalchemy_checkout),
            "checkout and return, psycopg pool": await timed(psycopg_checkout),
        }
    finally:
        await database.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc (Linux); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far, every process counted (Linux /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(stack: Stack, copies: Sequence[str] = ()) -> dict[str, float]:
    """CPU seconds so far of each process of the stack, of RabbitMQ and PostgreSQL (every
    process of theirs on this machine), of this one (the load generator), and of the machine.

    A process that exits between two readings takes its CPU with it: PostgreSQL backends of
    connections that came and went are missing from the PostgreSQL line, never from the
    machine's."""
    usage = {
        name: cpu_seconds(pid) for name in (*PROCESSES, *copies) if (pid := stack.pid_of(name))
    }
    servers = {"beam.smp": "RabbitMQ", "postgres": "PostgreSQL"}
    for server in servers.values():
        usage[server] = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if owner := servers.get((entry / "comm").read_text().strip()):
                    usage[owner] += cpu_seconds(int(entry.name))
    usage["load generator"] = cpu_seconds(os.getpid())
    usage[MACHINE] = machine_cpu_seconds()
    return usage


async def batch_units(urls: dict[str, str]) -> dict[tuple[str, str], tuple[float, float]]:
    """Each service's `saga_batch_units` so far, its sum and count by source (`messages`,
    `requests`): what two readings apart say units of work per transaction."""
    readings: dict[tuple[str, str], tuple[float, float]] = {}
    async with aiohttp.ClientSession() as session:
        for service, url in urls.items():
            async with session.get(f"{url}/metrics") as reply:
                text = await reply.text()
            for family in text_string_to_metric_families(text):
                if family.name != "saga_batch_units":
                    continue
                for sample in family.samples:
                    key = (service, sample.labels["source"])
                    total, count = readings.get(key, (0.0, 0.0))
                    if sample.name.endswith("_sum"):
                        readings[key] = (total + sample.value, count)
                    elif sample.name.endswith("_count"):
                        readings[key] = (total, count + sample.value)
    return readings


def units_per_transaction(
    before: dict[tuple[str, str], tuple[float, float]],
    after: dict[tuple[str, str], tuple[float, float]],
) -> str:
    """`order messages 3.1, order requests 5.2, ...`: mean units of work per transaction
    between two readings of `batch_units`."""
    means = []
    for key, (total, count) in after.items():
        total_before, count_before = before.get(key, (0.0, 0.0))
        if count > count_before:
            means.append(f"{' '.join(key)} {(total - total_before) / (count - count_before):.1f}")
    return ", ".join(means)


class ProjectionLag:
    """The dashboard's projection lag, sampled four times a second while a run lasts."""

    def __init__(self, dashboard_url: str | None) -> None:
        self._url = dashboard_url
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "ProjectionLag":
        if self._url:
            self._task = asyncio.create_task(self._sample(self._url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self, url: str) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/api/stats") as reply:
                        self.samples.append((await reply.json())["follower"]["lag_seconds"])
                await asyncio.sleep(0.25)

    def said(self) -> str:
        if not self.samples:
            return "no dashboard"
        ordered = sorted(self.samples)
        return f"median {1000 * ordered[len(ordered) // 2]:.0f} ms, max {1000 * ordered[-1]:.0f} ms"


async def route_latency(
    urls: dict[str, str], order_id: str | None, calls: int = 40
) -> dict[str, float]:
    """Median ms of the read routes, one call at a time: the lists, and the views of one order
    (`order_id`: one deep in the history, if there is one; else the newest)."""
    medians = {}
    async with aiohttp.ClientSession() as session:
        if order_id is None:
            async with session.get(f"{urls['order']}/orders?limit=1") as reply:
                order_id = str((await reply.json())["orders"][0]["order_id"])
        routes = {
            "GET /orders?limit=100": f"{urls['order']}/orders?limit=100",
            "GET /orders?status=CONFIRMED&limit=100": (
                f"{urls['order']}/orders?status=CONFIRMED&limit=100"
            ),
            "GET /orders/{id}": f"{urls['order']}/orders/{order_id}",
            "GET /orders/{id}/history": f"{urls['order']}/orders/{order_id}/history",
            "GET /payments?order_id=": f"{urls['payment']}/payments?order_id={order_id}",
            "GET /reservations?order_id=": (
                f"{urls['inventory']}/reservations?order_id={order_id}"
            ),
        }
        for route, url in routes.items():
            took = []
            for _ in range(calls):
                started = time.perf_counter()
                async with session.get(url) as reply:
                    await reply.read()
                    assert reply.status == 200, f"{route}: {reply.status}"
                took.append((time.perf_counter() - started) * 1000)
            medians[route] = statistics.median(took)
    return medians


def copies_of(config: StackConfig, processes: int) -> list[str]:
    """The names of the copies beyond the first of every service and relay (`payment.2`),
    each service's given a port of its own."""
    copies = []
    for copy in range(2, processes + 1):
        config.ports |= {f"{service}.{copy}": free_port() for service in SERVICE_NAMES}
        copies += [f"{name}.{copy}" for name in (*SERVICE_NAMES, *RELAYS)]
    return copies


def _row(label: str, result: Result) -> str:
    return (
        f"| {label} | {result.throughput:.1f} | {result.percentile(0.5):.0f} | "
        f"{result.percentile(0.95):.0f} | {result.percentile(0.99):.0f} |"
    )


async def bench(stack: Stack, args: argparse.Namespace) -> None:
    urls = stack.config.base_urls()
    idle, idle_own = await idle_latency(urls, args.idle_orders)
    print(
        f"idle, one order at a time: median {statistics.median(idle_own):.1f} ms by the order's "
        f"timestamps, {statistics.median(idle):.1f} ms as the polling client sees it"
    )

    copies = args.copies
    posts = [stack.config.base_url(name) for name in copies if name.startswith("order.")]
    # Not counted: every pool grows to its size, and every connection prepares its statements.
    await run_orders(urls, args.warm_up_orders, concurrency=128, rate=None, order_copies=posts)
    dashboard = None if args.without_dashboard else stack.config.dashboard_url
    rounds: list[tuple[Result, float]] = []  # each saturation, and the bare transport after it
    cpu: dict[str, float] = {}  # CPU seconds of the saturation runs, by process
    units_before = await batch_units(urls)
    spans_before = args.receiver.count if args.receiver else 0
    saturated_lag = ProjectionLag(dashboard)
    for round_ in range(1, args.rounds + 1):
        before = cpu_by_process(stack, copies)
        async with saturated_lag:
            saturated = await run_orders(
                urls, args.saturation_orders, concurrency=128, rate=None, order_copies=posts
            )
        for name, seconds in cpu_by_process(stack, copies).items():
            cpu[name] = cpu.get(name, 0.0) + seconds - before[name]
        transport = await transport_ceiling(
            stack.config.amqp_url, stack.config.database_url("order"), args.transport_messages, 16
        )
        rounds.append((saturated, transport))
        print(
            f"round {round_}: saturation {saturated.throughput:.1f} sagas/s "
            f"({args.saturation_orders} orders, 128 in flight), bare transport "
            f"{transport:.0f} messages/s: {share_of(saturated, transport):.0%} of it"
        )
    orders = sum(saturated.orders for saturated, _ in rounds)
    cpu = {name: seconds * 1000 / orders for name, seconds in cpu.items()}
    units = units_per_transaction(units_before, await batch_units(urls))
    print(f"units of work per transaction at saturation: {units}")
    if args.receiver:
        await asyncio.sleep(6)  # the SDK exports every 5 s, or at every 512 spans
        spans = (args.receiver.count - spans_before) / orders
        print(f"exporting: {spans:.1f} spans per saga reached the receiver at saturation")
    ceiling = statistics.median(saturated.throughput for saturated, _ in rounds)
    rows = [_row(f"saturation (closed loop, 128 in flight), round {n}", saturated)
            for n, (saturated, _) in enumerate(rounds, 1)]  # fmt: skip
    for share in (0.25, 0.5, 0.75):
        rate = ceiling * share
        result = await run_orders(
            urls, max(20, int(rate * args.seconds)), concurrency=1000, rate=rate,
            order_copies=posts,
        )  # fmt: skip
        rows.append(_row(f"{share:.0%} of saturation, {rate:.0f}/s offered", result))
        print(rows[-1])
    async with ProjectionLag(dashboard) as fifty_lag:
        at_fifty = await run_orders(
            urls, int(50 * args.seconds), concurrency=1000, rate=50, order_copies=posts
        )
    rows.append(_row("50/s offered", at_fifty))
    print(rows[-1])
    print(
        f"the dashboard's projection lag: at saturation {saturated_lag.said()}; "
        f"at 50/s {fifty_lag.said()}"
    )

    routes = await route_latency(urls, args.history_order)
    print("read routes, median ms: " + ", ".join(f"{k} {v:.1f}" for k, v in routes.items()))
    costs = await statement_costs(stack.config.database_url("order"))
    print("CPU µs, one at a time: " + ", ".join(f"{k} {v:.0f}" for k, v in costs.items()))

    print("\nCPU per saga at saturation, in ms:\n\n| process | CPU ms per saga |\n|---|---|")
    machine = cpu.pop(MACHINE)
    print("\n".join(f"| {name} | {ms:.1f} |" for name, ms in cpu.items()))
    print(f"| all of the above | {sum(cpu.values()):.1f} |\n| {MACHINE} | {machine:.1f} |")
    print(
        f"\n{machine:.1f} ms of CPU per saga on {os.cpu_count()} cores caps the stack near "
        f"{1000 * (os.cpu_count() or 1) / machine:.0f} sagas/s"
    )

    print("\n| load | completed sagas/s | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|")
    print("\n".join(rows))
    shares = sorted(share_of(saturated, transport) for saturated, transport in rounds)
    transports = sorted(transport for _, transport in rounds)
    print(
        f"\nidle single order, POST to CONFIRMED: median {statistics.median(idle_own):.0f} ms by "
        f"the order's timestamps, {statistics.median(idle):.0f} ms as the polling client sees it\n"
        f"bare transport (publish with confirms, consume, one transaction per message): "
        f"{transports[0]:.0f} to {transports[-1]:.0f} msg/s over {len(rounds)} rounds, "
        f"{DELIVERIES_PER_SAGA} deliveries per saga; each round's saturation against the "
        f"transport measured right after it: {', '.join(f'{share:.0%}' for share in shares)}, "
        f"median {statistics.median(shares):.0%}"
    )


def share_of(saturated: Result, transport: float) -> float:
    """Completed sagas/s as a share of the sagas/s the bare transport could carry."""
    return saturated.throughput / (transport / DELIVERIES_PER_SAGA)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="./saga bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--idle-orders", type=at_least(1), default=50)
    parser.add_argument("--warm-up-orders", type=at_least(1), default=300)
    parser.add_argument("--saturation-orders", type=at_least(1), default=1500)
    parser.add_argument("--seconds", type=above(0), default=15, help="length of each open-loop run")
    parser.add_argument("--transport-messages", type=at_least(1), default=5000)
    parser.add_argument(
        "--rounds", type=at_least(1), default=3,
        help="saturation runs, each followed by a measurement of the bare transport",
    )  # fmt: skip
    parser.add_argument(
        "--without-dashboard", action="store_true",
        help="stop the dashboard first: what it costs is the difference",
    )  # fmt: skip
    parser.add_argument(
        "--export-traces", action="store_true",
        help="export every span to a receiver of the bench's own: what exporting costs",
    )  # fmt: skip
    parser.add_argument(
        "--mode", choices=list(Mode), default=Mode.CHOREOGRAPHY,
        help="the saga choreographed (the default) or orchestrated",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=1, choices=(1, 2, 3),
        help="how many processes of each service and relay (POSTs spread over the orders')",
    )  # fmt: skip
    parser.add_argument(
        "--history", type=at_least(0), default=0, metavar="SAGAS",
        help="finished sagas written into the databases first (scripts/perf/history.py)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-modes", action="store_true",
        help="both modes, one after the other, in one table (scripts/perf/modes.py)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.compare_modes:
        from scripts.perf.modes import compare  # it builds on this module

        compare(args)
        return
    with contextlib.ExitStack() as running:
        env = {}
        args.receiver = None
        if args.export_traces:
            args.receiver = running.enter_context(TraceReceiver(keep=False).running())
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": args.receiver.endpoint}
            print(f"exporting spans to {args.receiver.endpoint}")
        directory = Path(tempfile.mkdtemp(prefix="saga-bench-"))
        config = StackConfig.isolated("sagabench", directory, env=env, mode=Mode(args.mode))
        args.copies = copies_of(config, args.processes)
        print(
            f"starting a stack of its own, {config.mode}, {args.processes} process(es) of each "
            f"service and relay (logs in {config.log_dir})"
        )
        stack = running.enter_context(Stack(config).running())
        if args.copies:
            stack.start(*args.copies)
            stack.wait_ready(*args.copies)
        if args.without_dashboard:
            stack.stop("dashboard")
        args.history_order = None
        if args.history:
            took = history.write(config, args.history)
            print(f"history: {args.history} finished sagas written in {took:.0f} s")
            args.history_order = history.history_order_id(config, args.history // 2)
        asyncio.run(bench(stack, args))


if __name__ == "__main__":
    main()
