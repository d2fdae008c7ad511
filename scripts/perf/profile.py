"""Where one process's CPU goes at saturation: a CPU-time profile, by package and by function.

    ./saga profile [order] [--orders 1500] [--top 15]

On a stack of its own (one process of each, as `./saga bench`), the named process runs under
cProfile on the CPU clock (scripts/perf/profiled.py). After a warm-up it places orders at
saturation, then prints that process's own CPU time by package (psycopg, aio-pika, FastAPI...)
and its costliest functions by their own time. cProfile slows the profiled process two to
three times: read the shares, not the absolute times.
"""

import argparse
import asyncio
import os
import pstats
import signal
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

from scripts.arguments import at_least
from scripts.perf.bench import run_orders
from scripts.stack import Stack, StackConfig
from shared.system import PROCESSES


class ProfiledStack(Stack):
    """A stack whose one named process runs under scripts/perf/profiled.py."""

    def __init__(self, config: StackConfig, profiled: str, output: Path) -> None:
        super().__init__(config)
        self.profiled, self.output = profiled, output

    def command(self, name: str) -> list[str]:
        command = super().command(name)
        if name != self.profiled:
            return command
        return [command[0], "-m", "scripts.perf.profiled", str(self.output), *command[1:]]


ROOT = Path(__file__).resolve().parents[2]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def place(filename: str) -> str:
    """A function's file, short: within its library, ours, or the standard library."""
    path = Path(filename)
    if filename == "~":
        return "C"
    if "site-packages" in path.parts:
        return "/".join(path.parts[path.parts.index("site-packages") + 1 :])
    for base, label in ((ROOT, ""), (STDLIB, "stdlib ")):
        if path.is_relative_to(base):
            return label + str(path.relative_to(base))
    return filename


def package(filename: str) -> str:
    """What a function belongs to: a library, one of our modules, a standard library module."""
    short = place(filename)
    if short == "C":
        return "C functions called from Python"
    if short.startswith("stdlib "):
        return "stdlib " + short.removeprefix("stdlib ").split("/")[0].removesuffix(".py")
    if "site-packages" in Path(filename).parts:
        return short.split("/")[0].removesuffix(".py")
    return short


def report(output: Path, top: int) -> None:
    stats = pstats.Stats(str(output))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(own for _calls, _primitive, own, _cumulative, _callers in entries.values())
    by_package: Counter[str] = Counter()
    for (filename, _line, _function), (_c, _p, own, _cum, _callers) in entries.items():
        by_package[package(filename)] += own
    print(f"\n{total:.1f} s of CPU profiled\n\n| package | share of CPU |\n|---|---|")
    for name, own in by_package.most_common(top):
        print(f"| {name} | {100 * own / total:.1f}% |")
    print("\n| function | own share of CPU |\n|---|---|")
    costliest = sorted(entries.items(), key=lambda entry: entry[1][2], reverse=True)[:top]
    for (filename, line, function), (_c, _p, own, _cum, _callers) in costliest:
        name = function if filename == "~" else f"{place(filename)}:{line} {function}"
        print(f"| {name} | {100 * own / total:.1f}% |")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="./saga profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("process", nargs="?", default="order", choices=PROCESSES)
    parser.add_argument("--orders", type=at_least(1), default=1500)
    parser.add_argument("--top", type=at_least(1), default=15)
    args = parser.parse_args()
    var_dir = Path(tempfile.mkdtemp(prefix="saga-profile-"))
    output = var_dir / f"{args.process}.prof"
    config = StackConfig.isolated("sagaprofile", var_dir)
    print(f"profiling {args.process} on a stack of its own (logs in {config.log_dir})")
    with ProfiledStack(config, args.process, output).running() as stack:
        urls = config.base_urls()
        asyncio.run(run_orders(urls, 300, concurrency=128, rate=None))  # warm-up
        pid = stack.pid_of(args.process)
        assert pid is not None
        os.kill(pid, signal.SIGUSR1)
        result = asyncio.run(run_orders(urls, args.orders, concurrency=128, rate=None))
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not output.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    if not output.exists():
        print(f"{args.process} wrote no profile; see {config.log_dir}", file=sys.stderr)
        return 1
    print(f"{result.orders} sagas at {result.throughput:.1f} sagas/s while profiled")
    report(output, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
