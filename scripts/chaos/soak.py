"""A soak: chaos for a long while at an even rate, every kind of fault, then every invariant.

    ./saga soak [--minutes 60] [--rate 5] [--seed 1] [--report var/soak/<when>.json]
    ./saga soak --no-cluster ...         one RabbitMQ node (broker kills) instead of three
    ./saga soak --mode orchestration ...

A preset of `./saga chaos` (scripts/chaos/__main__.py): a stack of its own with two copies of
every service and relay on a RabbitMQ cluster of three nodes (or one node), its own PostgreSQL,
every link through the fault proxy; orders offered at --rate for --minutes while faults of
every kind the target has are drawn from the seed. Every --every seconds (60) it prints the
faults so far by kind, the sagas placed and how they ended, and the memory of the processes.
Ctrl-C (or SIGTERM) stops it early: no more faults or orders, and what was placed is waited for
and checked as at the end. Then invariants 1 to 7, the memory of each process at the start and
at the end, and the report, as JSON, in the file --report names. The exit status is 1 on any
violation, as chaos's.
"""

import argparse
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from scripts.arguments import above, at_least
from scripts.chaos.__main__ import run
from scripts.chaos.faults import CLUSTER_KINDS, ONE_BROKER_KINDS
from scripts.stack.config import ROOT
from shared.system import Mode


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./saga soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=above(0), default=60, help="how long faults are injected")
    parser.add_argument("--rate", type=above(0), default=5.0, help="orders offered per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cluster", action=argparse.BooleanOptionalAction, default=True,
        help="three RabbitMQ nodes, hit one at a time (the default), or one node, killed whole",
    )  # fmt: skip
    parser.add_argument("--replicas", type=int, choices=[1, 2], default=2)
    parser.add_argument("--mode", choices=list(Mode), default=Mode.CHOREOGRAPHY)
    parser.add_argument(
        "--every", type=at_least(1), default=60, help="seconds between two lines of progress"
    )
    parser.add_argument("--report", type=Path, default=None, help="default: var/soak/<when>.json")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the data")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return argparse.Namespace(
        seconds=seconds,
        orders=math.ceil(args.rate * seconds),
        concurrency=256,  # an open loop: the rate decides, not this bound
        rate=args.rate,
        replicas=args.replicas,
        target="local",
        seed=args.seed,
        broker="local",
        cluster=args.cluster,
        rounds=1,
        kinds=CLUSTER_KINDS if args.cluster else ONE_BROKER_KINDS,
        mode=Mode(args.mode),
        keep=args.keep,
        every=args.every,
        report=args.report or ROOT / "var" / "soak" / f"{when}.json",
        json=False,
    )


def main(argv: list[str] | None = None) -> int:
    return run(parse(argv), Console())


if __name__ == "__main__":
    sys.exit(main())
