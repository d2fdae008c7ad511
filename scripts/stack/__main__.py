"""python -m scripts.stack {up,down,start,kill,logs,status,prepare}: the stack without Docker.

up              create and migrate the databases, start every process, follow all logs;
                Ctrl-C or SIGTERM stops them all
up --detach     the same in the background (pid files in var/run); `down` stops them
up --mode orchestration
                the same saga coordinated by the order service's orchestrator (SAGA_MODE)
up --prometheus also a Prometheus on :9090 scraping every process, with the saga's alert rules
logs NAME...    follow some processes' logs (or: tail -f var/log/NAME.log)
kill NAME       SIGKILL one process by its pid, as a crash would
start NAME      start one process (again)
status          which processes run, with their pids
"""

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from scripts.stack.follow import follow
from scripts.stack.processes import Stack
from scripts.stack.prometheus import DEFAULT_PORT, Prometheus, stop_detached
from shared.system import PROCESSES, Mode


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="prepare and start everything")
    up.add_argument("--detach", action="store_true", help="start in the background and return")
    up.add_argument(
        "--mode",
        choices=list(Mode),
        help="coordinate the saga by choreography (the default) or by the order service's "
        "orchestrator (SPEC.md, 'Orchestration mode'); or set SAGA_MODE",
    )
    up.add_argument(
        "--prometheus",
        action="store_true",
        help=f"also run Prometheus on :{DEFAULT_PORT}, scraping every process, with the alerts",
    )
    commands.add_parser("down", help="stop what `up --detach` started")
    commands.add_parser("prepare", help="create and migrate the databases only")
    commands.add_parser("status", help="which processes run")
    for name, help_text in (
        ("start", "start processes"),
        ("kill", "SIGKILL processes"),
        ("stop", "SIGTERM processes"),
        ("logs", "follow processes' logs"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "names", nargs="*" if name == "logs" else "+", choices=PROCESSES, metavar="NAME"
        )
    args = parser.parse_args()
    stack = Stack()
    if getattr(args, "mode", None):
        stack.config.mode = Mode(args.mode)

    if args.command == "prepare":
        stack.prepare()
    elif args.command == "up":
        return _up(stack, detach=args.detach, prometheus=args.prometheus)
    elif args.command == "down":
        stack.stop(*[name for name in PROCESSES if stack.is_running(name)])
        stop_detached(stack.config.var_dir / "prometheus")
    elif args.command == "status":
        for name in PROCESSES:
            state = f"running, pid {stack.pid_of(name)}" if stack.is_running(name) else "stopped"
            print(f"{name:<16} {state}")
    elif args.command == "start":
        stack.start(*args.names)
        stack.wait_ready(*args.names)
        for name in args.names:
            print(f"started {name}, pid {stack.pid_of(name)}")
    elif args.command == "kill":
        for name in args.names:
            stack.kill(name)
            print(f"killed {name}")
    elif args.command == "stop":
        stack.stop(*args.names)
    elif args.command == "logs":
        names = args.names or list(PROCESSES)
        _follow_until_signal({name: stack.log_path(name) for name in names}, from_start=True)
    return 0


def _up(stack: Stack, detach: bool, prometheus: bool) -> int:
    running = [name for name in PROCESSES if stack.is_running(name)]
    if running:
        print(
            f"already running: {', '.join(running)} (python -m scripts.stack down)", file=sys.stderr
        )
        return 1
    stack.prepare()
    stack.start()
    server = Prometheus(stack.config, stack.config.var_dir / "prometheus", DEFAULT_PORT)
    if prometheus:
        server.start()
        print(f"prometheus on {server.url} (alerts: {server.url}/alerts)", flush=True)
    if detach:
        stack.wait_ready()
        print(
            f"stack is up ({stack.config.mode}): {stack.config.addresses()}; "
            f"logs in {_relative(stack.config.log_dir)}"
        )
        return 0
    stop = threading.Event()
    follower = threading.Thread(
        target=follow, args=({name: stack.log_path(name) for name in PROCESSES}, stop), daemon=True
    )
    follower.start()

    def shutdown(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        stack.wait_ready()
        print(f"stack is up: {stack.config.addresses()} (Ctrl-C stops it)", flush=True)
    except (RuntimeError, TimeoutError) as exc:
        print(f"start-up failed: {exc}", file=sys.stderr)
        stop.set()
    stop.wait()
    print("stopping...", flush=True)
    stack.stop()
    server.stop()
    follower.join(timeout=1)
    return 0


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _follow_until_signal(paths: dict, from_start: bool) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    follow(paths, stop, from_start=from_start)


if __name__ == "__main__":
    sys.exit(main())
