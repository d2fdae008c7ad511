"""A tool that runs a stack of its own (`./saga bench`, `./saga profile`, the screenshots) leaves
nothing behind when it is told to stop with SIGTERM (`timeout 60 ./saga bench`, a supervisor):
its processes stopped, its databases and vhost dropped, as after Ctrl-C or an error."""

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psycopg

from scripts.stack import Stack, StackConfig
from scripts.stack.config import ROOT
from scripts.stack.processes import alive
from shared.system import PROCESSES
from tests.clients.database import ADMIN_URL
from tests.polling import wait_until

SERVICES_AND_RELAYS = [name for name in PROCESSES if name != "dashboard"]


def _databases(prefix: str) -> list[str]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        ).fetchall()
    return [name for (name,) in rows]


def _vhosts() -> str:
    done = subprocess.run(
        ["rabbitmqctl", "list_vhosts", "-q"], capture_output=True, text=True, timeout=60
    )
    return done.stdout


def test_a_terminated_bench_stops_its_stack_and_drops_what_it_made(tmp_path: Path) -> None:
    # The logs it keeps on purpose go where pytest keeps its last few runs' files, not to /tmp.
    bench = subprocess.Popen(
        [sys.executable, "-m", "scripts.perf.bench", "--without-dashboard", "--idle-orders", "500"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(bench.stdout or ()), daemon=True)
    reader.start()
    pids: dict[str, int] = {}
    left: StackConfig | None = None  # what to tear down if the bench does not
    try:
        first = wait_until(lambda: lines[:1], timeout=30, what="the bench's first line")[0]
        found = re.search(r"\(logs in (.+)\)$", first.strip())
        assert found, first
        log_dir = Path(found.group(1))
        assert log_dir.is_relative_to(tmp_path), log_dir
        run_dir = log_dir.parent / "run"

        def every_pid() -> dict[str, int] | None:
            files = {name: run_dir / f"{name}.pid" for name in SERVICES_AND_RELAYS}
            if not all(path.exists() for path in files.values()):
                return None
            return {name: int(path.read_text()) for name, path in files.items()}

        pids = wait_until(every_pid, timeout=120, what="the bench's stack to start")
        environ = Path(f"/proc/{pids['order']}/environ").read_bytes().split(b"\0")
        url = next(item for item in environ if item.startswith(b"DATABASE_URL=")).decode()
        prefix = url.rsplit("/", 1)[1].removesuffix("_order")
        vhost = prefix.replace("_", "-")
        left = StackConfig(database_prefix=prefix, vhost=vhost, var_dir=log_dir.parent)
        assert _databases(prefix) and vhost in _vhosts().split()
        # Sagas flow: the bench is in its first measurement, inside its event loop.
        wait_until(
            lambda: "InventoryReserved" in (log_dir / "order.log").read_text(),
            timeout=60,
            what="the bench's first confirmed order",
        )

        bench.send_signal(signal.SIGTERM)
        wait_until(lambda: bench.poll() is not None, timeout=90, what="the bench to exit")

        assert bench.returncode != 0  # stopped, not finished
        assert not [name for name, pid in pids.items() if alive(pid)]
        assert _databases(prefix) == []
        assert vhost not in _vhosts().split()
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(timeout=10)
        if left is not None:  # a no-op when the bench cleaned up after itself
            Stack(left).teardown()
