"""The no-Docker stack: the same processes as docker-compose.yml, on the local PostgreSQL and
RabbitMQ. `python -m scripts.stack --help` is its command line; the tests drive `Stack` itself,
each run with its own databases, vhost and ports.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg

from scripts.stack.instances import free_port
from shared import topology

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("order", "payment", "inventory")
RELAYS = tuple(f"{service}-relay" for service in SERVICES)
PROCESSES = SERVICES + RELAYS
DEFAULT_PORTS = {"order": 8001, "payment": 8002, "inventory": 8003}
RELAY_READY_LINE = b"relaying outbox"


@dataclass
class StackConfig:
    """Where the stack's pieces live. The defaults are SPEC.md's addresses."""

    database_prefix: str = "saga"
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    # A service whose database lives elsewhere (a test's own PostgreSQL, to be killed).
    pg_ports: dict[str, int] = field(default_factory=dict)
    pg_user: str = "postgres"  # the administrator: creates the roles and databases
    amqp_host: str = "127.0.0.1"
    amqp_port: int = 5672
    amqp_user: str = "guest"
    amqp_password: str = "guest"
    vhost: str = "/"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    var_dir: Path = ROOT / "var"
    # Extra environment for every process, and per process name.
    env: dict[str, str] = field(default_factory=dict)
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # How to reach rabbitmqctl for the vhost (a test's own broker node needs `-n NODE`).
    rabbitmqctl: list[str] = field(default_factory=lambda: ["rabbitmqctl"])

    @classmethod
    def from_env(cls) -> "StackConfig":
        """The defaults, or another stack named by SAGA_* variables (see `to_env`): how the
        command line, and the README walkthrough the tests replay, reach a test's stack."""
        env = os.environ
        config = cls()
        config.database_prefix = env.get("SAGA_DATABASE_PREFIX", config.database_prefix)
        config.vhost = env.get("SAGA_VHOST", config.vhost)
        config.var_dir = Path(env.get("SAGA_VAR_DIR", config.var_dir))
        for service in SERVICES:
            if port := env.get(f"SAGA_{service.upper()}_PORT"):
                config.ports[service] = int(port)
        return config

    @classmethod
    def isolated(cls, name: str, var_dir: Path, **overrides: Any) -> "StackConfig":
        """A stack of its own, for a test or a tool: databases `<name>_<run>_*`, vhost
        `<name>-<run>`, free ports, so it never meets another run's messages."""
        run = uuid.uuid4().hex[:8]
        fields: dict[str, Any] = {
            "database_prefix": f"{name}_{run}",
            "vhost": f"{name}-{run}",
            "ports": {service: free_port() for service in SERVICES},
            "var_dir": var_dir,
        }
        return cls(**(fields | overrides))

    def to_env(self) -> dict[str, str]:
        return {
            "SAGA_DATABASE_PREFIX": self.database_prefix,
            "SAGA_VHOST": self.vhost,
            "SAGA_VAR_DIR": str(self.var_dir),
            **{f"SAGA_{service.upper()}_PORT": str(self.ports[service]) for service in SERVICES},
        }

    def database(self, service: str) -> str:
        return f"{self.database_prefix}_{service}"

    def pg_port_of(self, service: str) -> int:
        return self.pg_ports.get(service, self.pg_port)

    def role(self, service: str) -> str:
        """Each service connects as a role of its own that owns its database and nothing else."""
        return self.database(service)

    def database_url(self, service: str) -> str:
        """What the service and its relay use: its own role, its own database."""
        return self._url(self.role(service), service)

    def admin_database_url(self, service: str) -> str:
        """For tools that look across services (the checker, the tests): the administrator."""
        return self._url(self.pg_user, service)

    def _url(self, user: str, service: str) -> str:
        return (
            f"postgresql+psycopg://{user}@{self.pg_host}:{self.pg_port_of(service)}/"
            f"{self.database(service)}"
        )

    @property
    def amqp_url(self) -> str:
        """The broker's administrator (guest on a local broker): for set-up and tools."""
        return self._amqp_url(self.amqp_user, self.amqp_password)

    def amqp_user_of(self, service: str) -> str:
        return self.role(service)

    def amqp_password_of(self, service: str) -> str:
        # A local development stack: a fixed password, like docker-compose.yml's defaults.
        return f"{self.amqp_user_of(service)}-dev-password"

    def amqp_url_of(self, service: str) -> str:
        """What a service and its relay use: their own broker user."""
        return self._amqp_url(self.amqp_user_of(service), self.amqp_password_of(service))

    def _amqp_url(self, user: str, password: str) -> str:
        return (
            f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{self.amqp_host}:"
            f"{self.amqp_port}/{quote(self.vhost, safe='')}"
        )

    def base_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"


class Stack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig.from_env()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[str, int] = {}

    # -- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create what is missing (databases and roles, vhost and broker users), declare the
        broker topology as its administrator, and migrate every database to head."""
        self.create_databases()
        self.create_vhost()
        self.create_broker_users()
        subprocess.run(
            [sys.executable, "-m", "shared.topology"],
            env={**os.environ, "AMQP_URL": self.config.amqp_url, **self.config.env},
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for service in SERVICES:
            subprocess.run(
                [sys.executable, "-m", f"services.{service}", "migrate"],
                env=self.env_for(service),
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )

    def _admin(self, service: str) -> psycopg.Connection:
        c = self.config
        return psycopg.connect(
            host=c.pg_host,
            port=c.pg_port_of(service),
            user=c.pg_user,
            dbname="postgres",
            autocommit=True,
        )

    def create_databases(self) -> None:
        """Per service: a login role, not a superuser, that owns its database; and no one else
        (PUBLIC) may connect to that database. So a service cannot reach another's tables."""
        for service in SERVICES:
            name, role = self.config.database(service), self.config.role(service)
            with self._admin(service) as conn:
                role_exists = "SELECT 1 FROM pg_roles WHERE rolname = %s"
                if not conn.execute(role_exists, [role]).fetchone():
                    conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
                database_exists = "SELECT 1 FROM pg_database WHERE datname = %s"
                if not conn.execute(database_exists, [name]).fetchone():
                    conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
                conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC')

    def drop_databases(self) -> None:
        for service in SERVICES:
            with self._admin(service) as conn:
                conn.execute(
                    f'DROP DATABASE IF EXISTS "{self.config.database(service)}" WITH (FORCE)'
                )
                conn.execute(f'DROP ROLE IF EXISTS "{self.config.role(service)}"')

    def create_vhost(self) -> None:
        vhost = self.config.vhost
        if vhost == "/":
            return
        self._rabbitmqctl("add_vhost", vhost, check=False)
        self._rabbitmqctl("set_permissions", "-p", vhost, self.config.amqp_user, ".*", ".*", ".*")

    def create_broker_users(self) -> None:
        """Per service: a broker user allowed only its own queues, and to publish to the saga's
        exchanges (shared/topology.py, `permissions`), as in docker-compose.yml."""
        for service in SERVICES:
            user, password = (
                self.config.amqp_user_of(service),
                self.config.amqp_password_of(service),
            )
            if not self._rabbitmqctl("add_user", user, password, check=False):
                self._rabbitmqctl("change_password", user, password)
            configure, write, read = topology.permissions(service)
            self._rabbitmqctl(
                "set_permissions", "-p", self.config.vhost, user, configure, write, read
            )

    def delete_broker_users(self) -> None:
        for service in SERVICES:
            self._rabbitmqctl("delete_user", self.config.amqp_user_of(service), check=False)

    def delete_vhost(self) -> None:
        if self.config.vhost != "/":
            self._rabbitmqctl("delete_vhost", self.config.vhost, check=False)

    def _rabbitmqctl(self, *args: str, check: bool = True) -> bool:
        # rabbitmqctl needs the broker's Erlang cookie: root's, or the rabbitmq user's.
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        done = subprocess.run(
            [*sudo, *self.config.rabbitmqctl, *args],
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return done.returncode == 0

    # -- processes ----------------------------------------------------------------------

    def env_for(self, name: str, **overrides: str) -> dict[str, str]:
        kind = _kind(name)
        service = kind.removesuffix("-relay")
        c = self.config
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": c.database_url(service),
            "AMQP_URL": c.amqp_url_of(service),
            # The administrator declared the topology in `prepare`; each process, as its own
            # broker user, declares only its own queues.
            "DECLARE_TOPOLOGY": "own",
            **c.env,
            **c.process_env.get(kind, {}),
            **overrides,
        }
        if kind in SERVICES:
            env["HTTP_PORT"] = str(c.ports[name])
        return env

    def command(self, name: str) -> list[str]:
        kind = _kind(name)
        if kind.endswith("-relay"):
            return [sys.executable, "-m", "relay", kind.removesuffix("-relay")]
        return [sys.executable, "-m", f"services.{kind}"]

    def log_path(self, name: str) -> Path:
        return self.config.log_dir / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.config.run_dir / f"{name}.pid"

    def start(self, *names: str, **env: str) -> None:
        """Start processes (all when none are named) with optional extra environment.

        A name with a suffix (`order-relay.2`) starts another instance of that process.
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
        if _kind(name) in SERVICES:
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
            elif not _alive(pid):
                break
            time.sleep(0.02)
        else:
            return False
        self.processes.pop(name, None)
        self.pid_path(name).unlink(missing_ok=True)
        return True

    @contextlib.contextmanager
    def running(self, timeout: float = 60.0) -> Iterator["Stack"]:
        """Prepare and start everything; on the way out, stop every process and drop the
        databases and vhost it made, whatever happened in between."""
        self.prepare()
        try:
            self.start()
            self.wait_ready(timeout=timeout)
            yield self
        finally:
            self.teardown()

    def teardown(self) -> None:
        """Stop every process this stack knows of (started here or by another command, going
        by the pid files), then drop its databases and vhost."""
        started_elsewhere = [p.stem for p in self.config.run_dir.glob("*.pid")]
        self.stop(*{*self.processes, *started_elsewhere})
        self.drop_databases()
        self.delete_broker_users()
        self.delete_vhost()

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
        return pid is not None and _alive(pid)


def _kind(name: str) -> str:
    """`order-relay.2`, a second instance, runs what `order-relay` runs."""
    return name.partition(".")[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True
