"""A stack's processes: started, stopped and killed by their own pids, each with its log file.

The same processes as docker-compose.yml, on the local PostgreSQL and RabbitMQ (or a test's own
instances). `python -m scripts.stack --help` is the command line; the tests drive `Stack` itself,
each run with its own databases, vhost and ports. Pid files in the stack's run directory are the
truth, so `./saga kill payment` finds the process that `./saga up --detach` started.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import httpx

from scripts.stack.config import ROOT, StackConfig
from scripts.stack.provision import Provisioner, module_of
from shared.system import COMPONENT_NAMES, PROCESSES, component_of, is_relay, kind_of

RELAY_READY_LINE = b"relaying outbox"


@contextlib.contextmanager
def _terminate_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises SystemExit in the main thread, as Ctrl-C raises
    KeyboardInterrupt: a tool told to stop (`timeout 60 ./saga bench`, a supervisor) unwinds
    and tears its stack down, instead of dying with its processes, databases and vhost left
    behind. Outside the main thread (where no handler can be set), a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the teardown runs
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Stack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig.from_env()
        self.provisioner = Provisioner(self.config)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[str, int] = {}

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Databases, roles, vhost, broker users, topology and migrations (scripts/stack/
        provision.py); what exists already is kept. The stack's mode is kept too."""
        self.config.save_mode()
        self.provisioner.prepare({name: self.env_for(name) for name in COMPONENT_NAMES})

    @contextlib.contextmanager
    def running(self, timeout: float = 60.0) -> Iterator["Stack"]:
        """Prepare and start everything; on the way out, stop every process and drop the
        databases and vhost it made, whatever happened in between: an error, Ctrl-C, or the
        tool running it being terminated (SIGTERM)."""
        with _terminate_unwinds():
            self.prepare()
            try:
                self.start()
                self.wait_ready(timeout=timeout)
                yield self
            finally:
                self.teardown()

    def teardown(self) -> None:
        """Stop every process this stack knows of (started here or by another command, going
        by the pid files), then drop its databases, broker users and vhost."""
        started_elsewhere = [p.stem for p in self.config.run_dir.glob("*.pid")]
        self.stop(*{*self.processes, *started_elsewhere})
        self.provisioner.remove()

    # -- processes ------------------------------------------------------------------------

    def env_for(self, name: str, **overrides: str) -> dict[str, str]:
        kind = kind_of(name)
        service = component_of(name).name
        c = self.config
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": c.database_url(service),
            "AMQP_URL": c.amqp_url_of(service),
            # The administrator declared the topology in `prepare`; each process, as its own
            # broker user, declares only its own queues.
            "DECLARE_TOPOLOGY": "own",
            "SAGA_MODE": c.mode,
            **c.env,
            **c.process_env.get(kind, {}),
            **(c.process_env.get(name, {}) if name != kind else {}),
            **overrides,
        }
        if not is_relay(name):
            env["HTTP_PORT"] = str(c.ports[name])
        elif name in c.relay_ports:
            env["METRICS_PORT"] = str(c.relay_ports[name])
        return env

    def command(self, name: str) -> list[str]:
        if is_relay(name):
            return [sys.executable, "-m", "relay", component_of(name).name]
        return [sys.executable, "-m", module_of(kind_of(name))]

    def log_path(self, name: str) -> Path:
        return self.config.log_dir / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.config.run_dir / f"{name}.pid"

    def start(self, *names: str, **env: str) -> None:
        """Start processes (all when none are named) with optional extra environment.

        A name with a suffix (`order-relay.2`) starts another copy of that process.
        """
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        for name in names or PROCESSES:
            with self.log_path(name).open("ab") as log:
                self._log_offsets[name] = log.tell()
                process = subprocess.Popen(
                    self.command(name),
                    cwd=ROOT,
                    env=self.env_for(name, **env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    # Its own session: a Ctrl-C in the terminal reaches the supervisor, which
                    # then stops each child in order, instead of reaching all at once.
                    start_new_session=True,
                )
            self.processes[name] = process
            self.pid_path(name).write_text(str(process.pid))

    def wait_ready(self, *names: str, timeout: float = 30.0) -> None:
        """Poll each service's /readyz and each relay's log until it is up, with a deadline."""
        deadline = time.monotonic() + timeout
        for name in names or PROCESSES:
            while not self._is_ready(name):
                process = self.processes.get(name)
                if process is not None and process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode}; see {self.log_path(name)}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{name} not ready after {timeout} s; see {self.log_path(name)}"
                    )
                time.sleep(0.1)

    def _is_ready(self, name: str) -> bool:
        if not is_relay(name):
            try:
                return (
                    httpx.get(f"{self.config.base_url(name)}/readyz", timeout=1).status_code == 200
                )
            except httpx.HTTPError:
                return False
        # A log file collects every run of its process: only what this run wrote counts.
        with self.log_path(name).open("rb") as log:
            log.seek(self._log_offsets.get(name, 0))
            return RELAY_READY_LINE in log.read()

    def pid_of(self, name: str) -> int | None:
        """The pid file is the truth: another `python -m scripts.stack` may have restarted it."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(self.pid_path(name).read_text())
        return self.processes[name].pid if name in self.processes else None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one process by its pid; SIGKILL waits until it is gone."""
        pid = self.pid_of(name)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if sig == signal.SIGKILL:
            self._reap(name, pid, timeout=10)

    def stop(self, *names: str, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL whatever has not exited by the deadline."""
        names = names or PROCESSES
        for name in names:
            self.kill(name, signal.SIGTERM)
        for name in names:
            pid = self.pid_of(name)
            if pid is not None and not self._reap(name, pid, timeout):
                self.kill(name, signal.SIGKILL)

    def _reap(self, name: str, pid: int, timeout: float) -> bool:
        process = self.processes.get(name)
        if process is not None and process.pid != pid:
            process = None  # restarted by another command: not our child
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None:
                if process.poll() is not None:
                    break
            elif not alive(pid):
                break
            time.sleep(0.02)
        else:
            return False
        self.processes.pop(name, None)
        self.pid_path(name).unlink(missing_ok=True)
        return True

    def wait_exit(self, name: str, timeout: float = 15.0) -> int:
        """Wait for a process to exit by itself (an injected crash); return its exit status."""
        process = self.processes[name]
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{name} still running after {timeout} s") from None
        self.processes.pop(name)
        self.pid_path(name).unlink(missing_ok=True)
        return code

    def is_running(self, name: str) -> bool:
        pid = self.pid_of(name)
        return pid is not None and alive(pid)


def alive(pid: int) -> bool:
    """Whether the process of that pid is still running (a zombie has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True
