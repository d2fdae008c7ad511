"""Chaos: kill and freeze components at random while load runs, then check every invariant.

    python -m scripts.chaos [--seconds 60] [--orders 600] [--replicas 1] [--seed 1]
    python -m scripts.chaos --cluster [--kinds node,link] [--seconds 60] [--orders 600]
    python -m scripts.chaos --target compose [--seconds 60] [--orders 600] [--seed 1]
    python -m scripts.chaos --mode orchestration ...   the same on the orchestrated saga

While scripts/perf/load.py places orders, it repeatedly picks a component (a service, a relay, the
broker, a database) and either kills it (SIGKILL) and starts it again after a random pause, or
freezes it (SIGSTOP, then SIGCONT); or it picks a link from a process to its database or to the
broker and resets it, black-holes it or slows it for a while (scripts/chaos/targets.py). The
first --rounds rounds inject every kind of fault once each; the rest are drawn from the seed
(scripts/chaos/faults.py); --kinds narrows both. At the end
it waits for the system to go quiet, runs scripts/ops/check.py, and prints the faults, the sagas
by outcome and the invariants; the exit status is 1 on any violation, and on any fault the
target refused.

Two targets:
- `local` (the default): a stack of its own, on its own PostgreSQL cluster and RabbitMQ node
  (so the database and the broker it kills are its own and the machine's are never touched),
  its own databases and ports, every process reaching them through the fault proxy
  (scripts/chaos/proxy.py). With --broker container that node is RabbitMQ 4 in a container,
  the broker docker-compose.yml runs. With --replicas 2 every service and relay runs twice
  (competing consumers, two relays per database), and faults hit either copy. With --cluster
  the broker is a cluster of three nodes of this machine's RabbitMQ (quorum queues and the
  audit stream on all three), every process given all three: instead of the broker, one
  node at a time is killed, frozen or partitioned away (kind `node`).
- `compose`: the docker compose stack, brought up with docker-compose.chaos.yml laid over
  docker-compose.yml (scripts/stack/compose.py); `docker compose kill --signal SIGKILL` and
  `start`, `pause` and `unpause`, `docker network disconnect` and `connect`. It is left
  running at the end, for a look at its logs. With --cluster, docker-compose.cluster.yml too:
  three RabbitMQ nodes, hit one at a time as on the local target.
"""

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import psycopg
from rich.console import Console

from scripts.arguments import above, at_least
from scripts.chaos import memory
from scripts.chaos.faults import BROKER, CLUSTER_KINDS, KINDS, NODE, ONE_BROKER_KINDS, Chaos
from scripts.chaos.progress import Watch
from scripts.chaos.proxy import FaultProxy, route_through
from scripts.chaos.targets import ComposeTarget, LocalTarget, Target
from scripts.ops.check import Invariant, check, report, snapshot
from scripts.ops.dashboard_check import check_dashboard
from scripts.perf.load import Load, Mix, Result, print_summary
from scripts.stack import Stack, StackConfig
from scripts.stack.compose import CLUSTER_FILE, COMPOSE_FILES, Compose, ComposeError
from scripts.stack.instances import (
    Broker,
    OwnPostgres,
    OwnRabbitMQCluster,
    free_port,
    own_broker,
)
from shared.system import PROCESSES, RELAYS, SERVICE_NAMES, Mode

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def build_stack(
    replicas: int, var_dir: Path, rabbit: Broker, postgres: OwnPostgres, mode: Mode
) -> tuple[Stack, list[str]]:
    """The chaos stack, and the names of the second copies to start beside the first."""
    config = StackConfig.isolated(
        "sagachaos", var_dir, amqp_port=rabbit.port, vhost="/", pg_port=postgres.port,
        rabbitmqctl=rabbit.rabbitmqctl, mode=mode,
        amqp_ports=rabbit.ports if isinstance(rabbit, OwnRabbitMQCluster) else [],
    )  # fmt: skip
    for copy in range(2, replicas + 1):
        config.ports |= {f"{service}.{copy}": free_port() for service in SERVICE_NAMES}
    stack = Stack(config)
    copied = (*SERVICE_NAMES, *RELAYS)
    return stack, [f"{name}.{copy}" for copy in range(2, replicas + 1) for name in copied]


def wait_quiet(config: StackConfig, within_seconds: float) -> list[Invariant]:
    """Run the check until it passes or the deadline comes: compensations may still be in
    flight when the last order turned terminal."""
    deadline = time.monotonic() + within_seconds
    while True:
        try:
            invariants = check(snapshot(config))
        except (OSError, psycopg.Error, aio_pika.exceptions.AMQPError):
            if time.monotonic() > deadline:
                raise
        else:
            if not any(i.violations for i in invariants) or time.monotonic() > deadline:
                return invariants
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=above(0), default=60, help="how long faults are injected")
    parser.add_argument("--orders", type=at_least(1), default=600)
    parser.add_argument("--concurrency", type=at_least(1), default=16)
    parser.add_argument("--rate", type=above(0), default=None, help="orders per second (open loop)")
    parser.add_argument("--replicas", type=int, default=1, choices=[1, 2])
    parser.add_argument(
        "--target", choices=["local", "compose"], default="local",
        help="local: a no-Docker stack of its own; compose: the docker compose stack",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--broker", choices=["local", "container"], default="local",
        help="the local target's broker: a node of this machine's RabbitMQ, or RabbitMQ 4 in a "
        "container (the image compose runs)",
    )  # fmt: skip
    parser.add_argument(
        "--cluster", action="store_true",
        help="a RabbitMQ cluster of three nodes for the broker: of this machine's RabbitMQ "
        "(local), or docker-compose.cluster.yml's (compose)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=at_least(0), default=1,
        help="how many rounds of every kind of fault come first, whatever --seconds says",
    )  # fmt: skip
    parser.add_argument(
        "--kinds", type=kinds, default=None,
        help=f"the kinds of component hit, comma-separated, of {','.join(KINDS)} (default: "
        f"all but {NODE}; with --cluster, all but {BROKER})",
    )  # fmt: skip
    parser.add_argument(
        "--mode", choices=list(Mode), default=Mode.CHOREOGRAPHY,
        help="how the saga is coordinated (SAGA_MODE): the checker then also holds every saga "
        "instance to its order (invariant 6)",
    )  # fmt: skip
    parser.add_argument(
        "--keep", action="store_true",
        help="keep PostgreSQL's data, and the logs even when every invariant held",
    )  # fmt: skip
    parser.add_argument(
        "--every", type=at_least(0), default=0,
        help="print a line of progress (faults by kind, sagas, memory) every so many seconds",
    )  # fmt: skip
    parser.add_argument(
        "--report", type=Path, default=None, help="write the run's report here, as JSON"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.cluster and args.broker != "local":
        parser.error("--cluster: the local target's cluster is of this machine's RabbitMQ")
    if args.kinds is None:
        args.kinds = CLUSTER_KINDS if args.cluster else ONE_BROKER_KINDS
    if (BROKER if args.cluster else NODE) in args.kinds:
        parser.error(
            f"--cluster: its nodes are hit one at a time (kind {NODE}), never the broker whole"
            if args.cluster else f"kind {NODE} needs a cluster (--cluster)"
        )  # fmt: skip
    console = Console(stderr=args.json)
    return run(args, console)


def kinds(text: str) -> tuple[str, ...]:
    chosen = tuple(kind.strip() for kind in text.split(","))
    if unknown := [kind for kind in chosen if kind not in KINDS]:
        raise argparse.ArgumentTypeError(f"no such kind: {', '.join(unknown)} (kinds: {KINDS})")
    return chosen


def run(args: argparse.Namespace, console: Console) -> int:
    if args.target == "compose":
        return run_on_compose(args, console)
    return run_locally(args, console)


def run_locally(args: argparse.Namespace, console: Console) -> int:
    var_dir = Path(tempfile.mkdtemp(prefix="saga-chaos-"))
    rabbit: Broker = (
        OwnRabbitMQCluster(var_dir / "rabbitmq")
        if args.cluster
        else own_broker(args.broker, var_dir / "rabbitmq")
    )
    postgres = OwnPostgres()
    console.print(
        f"chaos ({args.mode}): seed {args.seed}, {args.seconds:.0f} s of faults, logs in {var_dir}"
    )
    rabbit.start()
    postgres.start()
    proxy = FaultProxy()
    stack, extra_names = build_stack(
        args.replicas, var_dir / "stack", rabbit, postgres, Mode(args.mode)
    )
    route_through(proxy, stack.config, [*PROCESSES, *extra_names])
    try:
        stack.prepare()
        stack.start()
        if extra_names:
            stack.start(*extra_names)
        stack.wait_ready(*PROCESSES, *extra_names, timeout=60)
        target = LocalTarget(stack, rabbit, postgres, proxy, extra_names)
        outcome = inflict(target, args, console)
    finally:
        stack.stop(*list(stack.processes))
        proxy.close()
        rabbit.stop()
        if args.keep:
            postgres.stop()
            console.print(f"kept: PostgreSQL data in {postgres.data_dir}")
        else:
            postgres.remove()
    code = summarize(outcome, args, console)
    if code == 0 and not args.keep:
        shutil.rmtree(var_dir, ignore_errors=True)
        console.print("every invariant held: logs removed (--keep keeps them)")
    else:
        console.print(f"logs kept in {var_dir}")
    return code


def run_on_compose(args: argparse.Namespace, console: Console) -> int:
    if args.replicas != 1:
        console.print("--replicas 2 is for the local target: compose publishes one port each")
        return 2
    compose = Compose(
        env={"SAGA_MODE": args.mode},
        files=(*COMPOSE_FILES, CLUSTER_FILE) if args.cluster else COMPOSE_FILES,
    )
    console.print(
        f"chaos on docker compose ({args.mode}): seed {args.seed}, {args.seconds:.0f} s of faults"
    )
    try:
        compose.up()
        outcome = inflict(ComposeTarget(compose, compose.config()), args, console)
    except ComposeError as exc:
        console.print(str(exc))
        return 2
    console.print("the stack is left running: `docker compose logs`, `docker compose down -v`")
    return summarize(outcome, args, console)


@dataclass
class Outcome:
    """What a chaos run did and found."""

    chaos: Chaos
    result: Result
    invariants: list[Invariant]
    memory: list[dict[str, object]]
    readings: list[dict[str, object]]  # the progress lines' readings (--every)
    started_at: str
    seconds: float
    stopped_early: bool


def inflict(target: Target, args: argparse.Namespace, console: Console) -> Outcome:
    """Load and faults together, then everything back up and the system left to go quiet.

    Ctrl-C (or SIGTERM) stops the load and the faults: what was placed so far is waited for and
    checked all the same. A second one stops at once."""
    chaos = Chaos(
        target, random.Random(args.seed), args.seconds, rounds=args.rounds, kinds=args.kinds
    )
    load = Load(target.config.base_urls(), args.seed, Mix(scarce_units=20))
    injector = threading.Thread(target=chaos.run, name="chaos", daemon=True)
    watch = Watch(target, chaos, console, args.every)
    before = target.resident_memory()
    started_at, started = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()
    stopped = threading.Event()

    async def go() -> Result:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            console.print("stopping: no more faults, no more orders; then every invariant")
            stopped.set()
            chaos.halt.set()
            stop.set()
            for each in SIGNALS:  # a second one stops at once
                loop.remove_signal_handler(each)

        for each in SIGNALS:
            loop.add_signal_handler(each, stopping)
        try:
            injector.start()
            if args.every:
                watch.start()
            return await load.run_load(args.orders, args.concurrency, args.rate, 600,
                                       show_progress=console.is_terminal and not args.every,
                                       stop=stop)  # fmt: skip
        finally:
            for each in SIGNALS:
                loop.remove_signal_handler(each)
            await load.close()

    try:
        result = asyncio.run(go())
    finally:
        chaos.stop.set()
        if injector.is_alive():
            injector.join()
        watch.stop()
    target.heal()
    # Compensations may still be in flight when the last order turned terminal.
    invariants = wait_quiet(target.config, 120)
    if isinstance(target, LocalTarget):  # the compose stack's dashboard database is unpublished
        invariants.append(check_dashboard(target.config))
    held = memory.compare(before, target.resident_memory())
    return Outcome(chaos, result, invariants, held, list(watch.readings), started_at,
                   time.monotonic() - started, stopped.is_set())  # fmt: skip


def report_of(outcome: Outcome, args: argparse.Namespace) -> dict[str, object]:
    """The run as JSON: what --json prints and --report writes."""
    chaos = outcome.chaos
    return {
        "seed": args.seed,
        "target": args.target,
        "mode": args.mode,
        "cluster": args.cluster,
        "replicas": args.replicas,
        "started_at": outcome.started_at,
        "seconds": round(outcome.seconds),
        "stopped_early": outcome.stopped_early,
        "faults_by_kind": dict(
            sorted(Counter(f"{f.action} {f.kind}" for f in chaos.faults).items())
        ),
        "faults": [vars(fault) for fault in chaos.faults],
        "load": outcome.result.as_dict(),
        "memory": outcome.memory,
        "progress": outcome.readings,
        "invariants": [
            {"invariant": i.name, "checked": i.checked, "violations": i.violations}
            for i in outcome.invariants
        ],
    }


def summarize(outcome: Outcome, args: argparse.Namespace, console: Console) -> int:
    chaos = outcome.chaos
    # A fault the target refused makes the run prove less than it says: it fails too.
    failed = [fault for fault in chaos.faults if fault.error]
    broken = any(i.violations for i in outcome.invariants)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report_of(outcome, args), indent=2) + "\n")
    if args.json:
        print(json.dumps(report_of(outcome, args), indent=2))
        return 1 if failed or broken else 0
    faults = Counter(f"{fault.action} {fault.kind}" for fault in chaos.faults)
    console.print(
        f"{len(chaos.faults)} faults injected in {outcome.seconds / 60:.1f} min"
        f"{' (stopped early)' if outcome.stopped_early else ''}: "
        + ", ".join(f"{n} x {k}" for k, n in sorted(faults.items()))
    )
    for fault in failed:
        console.print(f"[red]not injected:[/red] {fault.action} {fault.target}: {fault.error}")
    print_summary(outcome.result, console)
    memory.print_table(outcome.memory, console)
    code = max(report(outcome.invariants), 1 if failed else 0)
    if args.report:
        console.print(f"report written to {args.report}")
    return code


if __name__ == "__main__":
    sys.exit(main())
