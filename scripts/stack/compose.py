"""docker compose: the stack of docker-compose.yml, for `./saga compose`, chaos and the tests.

- Every host port the stack publishes is a setting whose default is the usual port
  (`HOST_PORTS`; SAGA_AMQP_HOST_PORT and the like), read by docker-compose.yml, by the tools
  (scripts/stack/config.py) and here; a port in use is refused before anything starts.
- Every image is a setting too; where no registry answers, stand-ins are built from Debian's
  packages (scripts/stack/images.py).
- `up` waits until every container is healthy; one that never gets there is named, with its
  last log lines.
- Chaos hits it the way Docker gives faults: `kill --signal SIGKILL` and `start` for a crash,
  `pause` and `unpause` (the cgroup freezer) for a partition. Its checker reads the databases
  through the ports docker-compose.chaos.yml adds.
"""

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scripts.stack import images
from scripts.stack.config import ROOT, StackConfig
from shared.system import COMPONENTS, SERVICES, Mode

BASE_FILE, CHAOS_FILE = "docker-compose.yml", "docker-compose.chaos.yml"
COMPOSE_FILES = (BASE_FILE, CHAOS_FILE)
# A RabbitMQ cluster of three nodes in place of the one broker; its first node is the broker's.
CLUSTER_FILE = "docker-compose.cluster.yml"
CLUSTER_NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")
# The project name docker-compose.yml gives itself: `./saga compose` and chaos hit the stack
# `docker compose up` runs, unless told another (a test's own).
PROJECT = "saga"
BROKER_CONTAINER = "rabbitmq"
WAIT_SECONDS = 300
DOWN_ATTEMPTS = 5  # `down` refused for a network still releasing its endpoints (see `down`)


@dataclass(frozen=True)
class HostPort:
    variable: str
    default: int
    what: str

    def of(self, env: Mapping[str, str]) -> int:
        return int(env.get(self.variable) or self.default)


AMQP_PORT = HostPort("SAGA_AMQP_HOST_PORT", 5672, "RabbitMQ's AMQP")
MANAGEMENT_PORT = HostPort("SAGA_MANAGEMENT_HOST_PORT", 15672, "RabbitMQ's management UI")
API_PORTS = {
    c.name: HostPort(f"SAGA_{c.name.upper()}_HOST_PORT", c.port, f"the {c.name} API")
    for c in COMPONENTS
}
# Published only by docker-compose.chaos.yml, for the checker on the host.
DATABASE_PORTS = {
    s.name: HostPort(f"SAGA_{s.name.upper()}_DB_HOST_PORT", 5433 + i, f"the {s.name} database")
    for i, s in enumerate(SERVICES)
}
PROMETHEUS_PORT = HostPort("SAGA_PROMETHEUS_HOST_PORT", 9090, "Prometheus")
# Published only with the tracing profile.
TRACE_VIEWER_PORT = HostPort("SAGA_TRACE_VIEWER_HOST_PORT", 6006, "the trace viewer")
# Published only by docker-compose.cluster.yml: the host's tools, like every process, are given
# every node of the cluster.
CLUSTER_PORTS = tuple(
    HostPort(f"SAGA_AMQP_{n}_HOST_PORT", 5672 + 10 * (n - 1), f"RabbitMQ's node {node} (AMQP)")
    for n, node in enumerate(CLUSTER_NODES[1:], start=2)
)
ALWAYS_PUBLISHED = (
    AMQP_PORT, MANAGEMENT_PORT, *API_PORTS.values(), PROMETHEUS_PORT, TRACE_VIEWER_PORT,
)  # fmt: skip
HOST_PORTS = (*ALWAYS_PUBLISHED, *CLUSTER_PORTS, *DATABASE_PORTS.values())
TRACING_PROFILE = "tracing"
# How the processes reach the trace viewer inside the stack, and where the dashboard links a
# trace (Phoenix's page of a trace in its default project, whose id is "Project:1" in base64).
OTLP_ENDPOINT = "http://trace-viewer:6006"
TRACE_PAGE = "http://127.0.0.1:{port}/projects/UHJvamVjdDox/traces/{{trace_id}}"


class ComposeError(RuntimeError):
    pass


class Compose:
    def __init__(
        self,
        project: str | None = None,
        env: Mapping[str, str] | None = None,
        files: tuple[str, ...] = COMPOSE_FILES,
        *,
        tracing: bool = False,
    ) -> None:
        """`tracing`: with the trace viewer (the tracing profile), every process exporting its
        spans to it and the dashboard linking to it."""
        self.env = {**os.environ, **(env or {})}
        self.project = project or self.env.get("COMPOSE_PROJECT_NAME") or PROJECT
        self.files = files
        self.tracing = tracing
        if tracing:
            self.env.setdefault("SAGA_OTLP_ENDPOINT", OTLP_ENDPOINT)
            port = TRACE_VIEWER_PORT.of(self.env)
            self.env.setdefault("SAGA_TRACE_URL", TRACE_PAGE.format(port=port))

    def run(self, *args: str, check: bool = True, timeout: float | None = None) -> str:
        """Run `docker compose` with this stack's files; a failure raises in Docker's words."""
        if shutil.which("docker") is None:
            raise ComposeError("docker is not installed here; use the no-Docker stack: ./saga up")
        files = [arg for name in self.files for arg in ("--file", str(ROOT / name))]
        profiles = ["--profile", TRACING_PROFILE] if self.tracing else []
        command = ["docker", "compose", "--project-name", self.project, *files, *profiles, *args]
        done = subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise ComposeError(f"`docker compose {' '.join(args)}` failed: {' '.join(said[-3:])}")
        return done.stdout

    def ensure_engine(self) -> None:
        if shutil.which("docker") is None:
            raise ComposeError("docker is not installed here; use the no-Docker stack: ./saga up")
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, env=self.env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise ComposeError(
                f"no Docker engine answers ({said[-1] if said else 'docker info failed'}); "
                "start one (dockerd), or use the no-Docker stack: ./saga up"
            )

    def up(self) -> None:
        """Images resolved, ports checked, then build, create what changed and wait until every
        container is healthy (one-shot jobs: exited 0)."""
        self.ensure_engine()
        self.env |= images.resolve(self.env, tracing=self.tracing)
        self._check_ports()
        wanted, running = self.env.get("SAGA_MODE"), self.running_mode()
        if running and not wanted:  # `up` again keeps the stack's mode
            self.env["SAGA_MODE"] = wanted = running
        if running and wanted != running:
            # Its queues and their bindings (and its databases' sagas) are the other mode's.
            raise ComposeError(
                f"the stack runs in {running}; to run it in {wanted}, take it down with its "
                "data first: ./saga compose down --volumes"
            )
        try:
            self.run("up", "--detach", "--build", "--wait", "--wait-timeout", str(WAIT_SECONDS))
        except ComposeError as exc:
            raise ComposeError(f"{exc}\n{self._diagnose()}".rstrip()) from None

    def down(self, volumes: bool = False) -> None:
        # The engine now and then refuses to remove a network whose containers it has just
        # removed ("has active endpoints": their endpoints are still being released; seen in a
        # fresh-clone CI). `down` again, a moment later, finishes the job.
        for attempt in range(DOWN_ATTEMPTS):
            try:
                self.run("down", "--remove-orphans", *(["--volumes"] if volumes else []))
                return
            except ComposeError as refused:
                if "active endpoints" not in str(refused) or attempt == DOWN_ATTEMPTS - 1:
                    raise
                time.sleep(1)

    def ps(self) -> list[dict[str, Any]]:
        """Every container of the project, running or not, as `docker compose ps` says."""
        out = self.run("ps", "--all", "--format", "json").strip()
        if out.startswith("["):  # older compose: one array; newer: one object per line
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def logs(self, container: str, tail: int = 15) -> str:
        return self.run("logs", "--no-color", "--tail", str(tail), container, check=False)

    def kill(self, container: str) -> None:
        self.run("kill", "--signal", "SIGKILL", container)

    def start(self, service: str) -> None:
        """Start a service's stopped container as it is: `docker start`, not `docker compose
        start`, which first waits for the service's dependencies to be healthy and refuses when
        one is not (a broker node just restarted, whose next health check is still to come)."""
        done = subprocess.run(
            ["docker", "start", self.container_of(service)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ComposeError(f"docker start {service} failed: {done.stderr.strip()}")

    def pause(self, container: str) -> None:
        # runc's cgroup-v1 freezer gives up on a busy container now and then ("unable to
        # freeze"); a moment later it takes.
        for attempt in range(5):
            try:
                self.run("pause", container)
                return
            except ComposeError as exc:
                if "unable to freeze" not in str(exc) or attempt == 4:
                    raise
            time.sleep(0.2)

    def unpause(self, container: str) -> None:
        self.run("unpause", container)

    def disconnect(self, service: str, network: str) -> None:
        """Take a service's container off one of its networks: its packets there are dropped."""
        _docker_network("disconnect", f"{self.project}_{network}", self.container_of(service))

    def connect(self, service: str, network: str) -> None:
        """Put it back, under its service's name, as compose had it."""
        _docker_network(
            "connect", "--alias", service, f"{self.project}_{network}",
            self.container_of(service),
        )  # fmt: skip

    def container_of(self, service: str) -> str:
        return next(c["Name"] for c in self.ps() if c["Service"] == service)

    def heal(self) -> None:
        """Every container thawed, running and healthy again. A container just thawed may
        still be marked unhealthy (its checks timed out while frozen), which `up --wait`
        takes for a failure: it is given a minute to pass its checks again."""
        self.run("unpause", check=False)  # refuses when nothing is paused, which is fine
        for attempt in range(4):
            try:
                self.up()
                return
            except ComposeError:
                if attempt == 3:
                    raise
                time.sleep(20)

    def config(self) -> StackConfig:
        """How the host reaches the stack: the published ports, as the administrators.

        The administrators' passwords are docker-compose.yml's defaults unless the same
        variables say otherwise; libpq takes the database one from PGPASSWORD.
        """
        env = self.env
        os.environ.setdefault("PGPASSWORD", env.get("POSTGRES_PASSWORD", "postgres-dev-password"))
        return StackConfig(
            database_prefix="saga",
            pg_ports={name: port.of(env) for name, port in DATABASE_PORTS.items()},
            amqp_port=AMQP_PORT.of(env),
            amqp_ports=(
                [AMQP_PORT.of(env), *(port.of(env) for port in CLUSTER_PORTS)]
                if CLUSTER_FILE in self.files
                else []
            ),
            amqp_user=env.get("RABBITMQ_DEFAULT_USER", "saga-admin"),
            amqp_password=env.get("RABBITMQ_DEFAULT_PASS", "admin-dev-password"),
            ports={name: port.of(env) for name, port in API_PORTS.items()},
            mode=Mode(env.get("SAGA_MODE") or self.running_mode() or Mode.CHOREOGRAPHY),
        )

    def running_mode(self) -> str | None:
        """The SAGA_MODE the stack's order container was created with; None without one."""
        if shutil.which("docker") is None or not self._exists():
            return None
        order = next((c["Name"] for c in self.ps() if c["Service"] == "order"), None)
        if order is None:
            return None
        done = subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config.Env}}", order],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        try:
            env = dict(item.partition("=")[::2] for item in json.loads(done.stdout))
        except (ValueError, TypeError):  # no such container after all, or no answer
            return None
        return env.get("SAGA_MODE") or None

    def _check_ports(self) -> None:
        """Refuse a host port that something else holds, naming its setting. Ports this
        project's own containers publish are fine: `up` is run again on a running stack."""
        ours = {
            publisher.get("PublishedPort")
            for container in (self.ps() if self._exists() else [])
            for publisher in container.get("Publishers") or []
        }
        published = [
            *ALWAYS_PUBLISHED,
            *(DATABASE_PORTS.values() if CHAOS_FILE in self.files else ()),
            *(CLUSTER_PORTS if CLUSTER_FILE in self.files else ()),
        ]
        for port in published:
            if port is TRACE_VIEWER_PORT and not self.tracing:
                continue
            number = port.of(self.env)
            if number not in ours and not _free(number):
                raise ComposeError(
                    f"port {number} on 127.0.0.1 ({port.what}, {port.variable}) is in use; "
                    f"set {port.variable} to a free port"
                )

    def _exists(self) -> bool:
        return bool(self.run("ps", "--all", "--quiet", check=False).strip())

    def _diagnose(self) -> str:
        """Each container that is not running and healthy (or, one-shot, exited 0), with its
        last log lines."""
        lines = []
        for container in self.ps():
            state, health = container.get("State"), container.get("Health") or ""
            exited_well = state == "exited" and container.get("ExitCode") == 0
            if exited_well or (state == "running" and health in ("", "healthy")):
                continue
            name = container.get("Service") or container.get("Name")
            lines.append(f"{name} is {state}{f' ({health})' if health else ''}; its last lines:")
            lines += [f"  {line}" for line in self.logs(str(name)).splitlines()[-15:]]
        return "\n".join(lines)


def _docker_network(*args: str) -> None:
    done = subprocess.run(["docker", "network", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ComposeError(f"docker network {args[0]} failed: {done.stderr.strip()}")


def _free(port: int) -> bool:
    """Whether a server could listen on the port now: connections of the past (TIME_WAIT)
    do not hold it, a listener does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
