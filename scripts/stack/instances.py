"""A PostgreSQL cluster or RabbitMQ node of our own, to kill and restart at will.

Tests and chaos runs that stop a database or the broker start one of these first (own data
directory, node name and ports), so the machine's own PostgreSQL and RabbitMQ are never touched.
Each runs in its own process group, and is stopped through it by its own pid.
"""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import psycopg


class Broker(Protocol):
    """A RabbitMQ node of a test's or a tool's own, to kill and start at will: OwnRabbitMQ
    (this machine's RabbitMQ, as a node of its own), ContainerRabbitMQ (RabbitMQ 4) or
    OwnRabbitMQCluster (three nodes of the first)."""

    @property
    def port(self) -> int: ...
    @property
    def rabbitmqctl(self) -> list[str]: ...
    @property
    def pid(self) -> int | None: ...
    def start(self, timeout: float = ...) -> None: ...
    def kill(self, sig: int = ..., timeout: float = ...) -> None: ...
    def stop(self) -> None: ...


def own_broker(kind: str, base_dir: Path) -> Broker:
    """`local`: a node of this machine's RabbitMQ; `container`: RabbitMQ 4 in a container."""
    return ContainerRabbitMQ() if kind == "container" else OwnRabbitMQ(base_dir)


# Every port free_port has given out in this process. The kernel may hand a port that was
# given out, and let go until its user binds it, to the next bind to port 0: two of a stack's
# processes, or a process and a link of the fault proxy, would then meet on one port, and the
# later would fail to start.
_GIVEN_OUT: set[int] = set()


def free_port() -> int:
    """A port that nothing listens on now and that this process has not given out before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if keep(port):
            return port


def keep(port: int) -> bool:
    """Count a port bound to 0 elsewhere in this process (and kept bound) as given out, so that
    free_port never gives it; False if free_port gave it out already: bind again."""
    if port in _GIVEN_OUT:
        return False
    _GIVEN_OUT.add(port)
    return True


def wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not listening on {port} after {timeout} s")
        time.sleep(0.1)


class _Instance:
    """A server process in its own process group."""

    name = "server"

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = base_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, command: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> None:
        log = (self.base_dir / f"{self.name}.out").open("ab")
        self.process = subprocess.Popen(  # type: ignore[call-overload]
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,
        )
        log.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Signal the whole process group (the server and its children); wait unless it is a
        pause (SIGSTOP) or a resume (SIGCONT)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        # Children outlive a killed leader for a moment; wait until the group is empty.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


class OwnPostgres(_Instance):
    """`initdb` + `postgres` on a data directory of its own, trust auth, user postgres."""

    name = "postgres"

    def __init__(self, port: int | None = None) -> None:
        # A directory of its own under /tmp: as root, the server runs as the postgres user
        # (PostgreSQL refuses root), who could not traverse a test's private temp directory.
        super().__init__(Path(tempfile.mkdtemp(prefix="saga-pg-")), port)
        self.data_dir = self.base_dir / "pgdata"
        self.bin_dir = Path(_postgres_bin_dir())
        self._user = "postgres" if os.geteuid() == 0 else None

    def _as_owner(self) -> dict[str, Any]:
        return {"user": self._user, "group": self._user} if self._user else {}

    def start(self, timeout: float = 60.0) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._user:
            shutil.chown(self.base_dir, self._user, self._user)
        if not self.data_dir.exists():
            subprocess.run(
                [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "-A", "trust", "--no-sync", "-E", "UTF8"],
                check=True, stdout=subprocess.DEVNULL, **self._as_owner(),  # type: ignore[arg-type]
            )  # fmt: skip
        self._spawn(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-k", str(self.base_dir), "-c", "listen_addresses=127.0.0.1",
             "-c", "max_connections=300"],
            **self._as_owner(),
        )  # fmt: skip
        self._wait_accepting(timeout)

    def _wait_accepting(self, timeout: float) -> None:
        """Until a connection succeeds: the server listens a moment before it accepts, and
        answers "the database system is starting up" (57P03) in between."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(
                    host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                    connect_timeout=2,
                ).close()  # fmt: skip
                return
            except psycopg.OperationalError as exc:
                if self.pid is None:
                    raise RuntimeError(
                        f"PostgreSQL exited; see {self.base_dir / 'postgres.out'}"
                    ) from exc
                if time.monotonic() > deadline:
                    raise TimeoutError(f"PostgreSQL on {self.port}: {exc}") from exc
            time.sleep(0.1)

    def remove(self) -> None:
        """Stop the server and delete its data directory."""
        self.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)


class OwnRabbitMQ(_Instance):
    """A RabbitMQ node with its own name, ports, config and data directory (guest/guest)."""

    name = "rabbitmq"

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        super().__init__(base_dir, port)
        self.node = f"saga-{uuid.uuid4().hex[:8]}@localhost"
        self.dist_port = free_port()

    @property
    def rabbitmqctl(self) -> list[str]:
        return [_rabbitmq_script("rabbitmqctl"), "-n", self.node]

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            # Our own (empty) env file: the machine's would set its node name and port.
            "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_PID_FILE": str(self.base_dir / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self, timeout: float = 90.0) -> None:
        self.spawn()
        wait_for_port(self.port, timeout, f"RabbitMQ {self.node}")

    def spawn(self) -> None:
        """Start the node, without waiting for it (a cluster starts its nodes together)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            # A node that loses sight of most of its cluster stops serving (closing its clients'
            # connections, which then go to another node) until it sees them again: RabbitMQ's
            # advice for a cluster of three or more. Nothing to a node alone.
            "cluster_partition_handling = pause_minority\n"
        )
        (self.base_dir / "rabbitmq-env.conf").write_text("")
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        self._spawn([_rabbitmq_script("rabbitmq-server")], env=self._env())

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run rabbitmqctl on this node; its output, or an error saying what failed."""
        done = subprocess.run(
            [*self.rabbitmqctl, *args], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)[:80]}: {done.stderr.strip()}")
        return done.stdout


class OwnRabbitMQCluster:
    """Three nodes of this machine's RabbitMQ clustered together (RabbitMQ's own clustering:
    the second and third join the first), each with its own name, ports and data, sharing the
    Erlang cookie in $HOME. Every quorum queue and the audit stream declared once the cluster
    formed has a member on every node. One node at a time is killed, frozen or partitioned
    away (`partition`, `reconnect`); the cluster as a whole starts, stops and is killed like
    one OwnRabbitMQ. `port` is the first node's, `ports` every node's."""

    def __init__(self, base_dir: Path, size: int = 3) -> None:
        self.nodes = [OwnRabbitMQ(base_dir / f"node-{i}") for i in range(1, size + 1)]
        self._formed = False

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def rabbitmqctl(self) -> list[str]:
        """rabbitmqctl on the first node that runs: users, vhosts and policies are the
        cluster's, whichever node is asked."""
        running = [node for node in self.nodes if node.pid is not None] or self.nodes
        return running[0].rabbitmqctl

    @property
    def pid(self) -> int | None:
        return self.nodes[0].pid

    def start(self, timeout: float = 120.0) -> None:
        """Start every node that is down; the first time, form the cluster."""
        down = [node for node in self.nodes if node.pid is None]
        for node in down:
            node.spawn()
        for node in down:
            wait_for_port(node.port, timeout, f"RabbitMQ {node.node}")
        if not self._formed:
            first = self.nodes[0]
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", first.node)
                node.ctl("start_app")
            first.ctl("await_online_nodes", str(len(self.nodes)), timeout=timeout)
            self._formed = True

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.kill(sig, timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def partition(self, node: OwnRabbitMQ) -> None:
        """Cut `node` off from the rest of the cluster (`cut_off`)."""
        node.ctl("eval", cut_off(self._peers_of(node)))

    def reconnect(self, node: OwnRabbitMQ) -> None:
        """Heal the partition (`rejoin`)."""
        node.ctl("eval", rejoin(self._peers_of(node)))

    def _peers_of(self, node: OwnRabbitMQ) -> list[str]:
        return [peer.node for peer in self.nodes if peer is not node]

    def queue_leaders(self, vhost: str) -> list[str]:
        """The node leading each queue of `vhost`, asked of each node in turn until one serves
        (a partitioned node's VM runs but answers nothing)."""
        failure: Exception | None = None
        for node in self.nodes:
            try:
                return node.ctl("-q", "list_queues", "-p", vhost, "leader", "--no-table-headers",
                                timeout=30).split()  # fmt: skip
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                failure = exc
        raise RuntimeError(f"no node of the cluster lists its queues: {failure}")


def cut_off(peers: list[str]) -> str:
    """An Erlang expression for `rabbitmqctl eval` on a node that partitions it from its peers,
    both ways: it takes a cookie of its own for each and drops their connections, so neither
    side's Erlang distribution can reach the other. Its client port stays open; with
    pause_minority the node then stops serving, and its clients move on. Only the peers: the
    CLI's own connection must survive the call."""
    return (f"[begin erlang:set_cookie(N, saga_partitioned), erlang:disconnect_node(N) end "
            f"|| N <- [{_atoms(peers)}]], ok.")  # fmt: skip


def rejoin(peers: list[str]) -> str:
    """The expression that heals `cut_off`: the node takes the cluster's cookie for its peers
    again and calls on them."""
    return (f"[erlang:set_cookie(N, erlang:get_cookie()) || N <- [{_atoms(peers)}]], "
            f"[net_adm:ping(N) || N <- [{_atoms(peers)}]], ok.")  # fmt: skip


def _atoms(nodes: list[str]) -> str:
    return ", ".join(f"'{node}'" for node in nodes)


def _postgres_bin_dir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if candidates:
        return candidates[-1]
    found = shutil.which("postgres") or shutil.which("pg_ctl")
    if found:
        return str(Path(found).parent)
    raise FileNotFoundError("no PostgreSQL server binaries (apt-get install postgresql)")


def _rabbitmq_script(name: str) -> str:
    # Debian's /usr/sbin wrappers switch to the rabbitmq user and its node; the scripts behind
    # them run as we are, with our environment.
    direct = Path("/usr/lib/rabbitmq/bin") / name
    if direct.exists():
        return str(direct)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"no {name} (apt-get install rabbitmq-server)")


class ContainerRabbitMQ:
    """A RabbitMQ 4 node in a container of its own: the broker docker-compose.yml ships (its
    image, or the stand-in where no registry answers, scripts/stack/images.py), for the
    no-Docker stack's tests and chaos. guest/guest on a free port of 127.0.0.1; killed, frozen
    and started like OwnRabbitMQ, through the engine; removed with its data by `stop`."""

    def __init__(self, image: str | None = None, port: int | None = None) -> None:
        self.container = f"saga-rabbitmq-{uuid.uuid4().hex[:8]}"
        self.port = port or free_port()
        self._image = image

    @property
    def rabbitmqctl(self) -> list[str]:
        return ["docker", "exec", self.container, "rabbitmqctl"]

    @property
    def pid(self) -> int | None:
        """The node's pid on this machine while its container runs, as OwnRabbitMQ's."""
        state = _docker("inspect", "--format", "{{.State.Pid}}", self.container, check=False)
        pid = int(state.stdout.strip() or 0) if state.returncode == 0 else 0
        return pid or None

    def start(self, timeout: float = 120.0) -> None:
        if _docker("container", "inspect", self.container, check=False).returncode == 0:
            _docker("start", self.container)
        else:
            from scripts.stack import images  # building a stand-in is the harness's job

            image = self._image or images.runnable(images.RABBITMQ)
            _docker(
                "run", "--detach", "--name", self.container, "--hostname", "rabbit",
                "--publish", f"127.0.0.1:{self.port}:5672", image,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while self._ping().returncode != 0:
            if time.monotonic() > deadline:
                logs = _docker("logs", "--tail", "20", self.container, check=False)
                raise TimeoutError(
                    f"RabbitMQ in {self.container} not up after {timeout} s:\n{logs.stdout}"
                )
            time.sleep(0.5)

    def _ping(self) -> subprocess.CompletedProcess[str]:
        return _docker(
            "exec", self.container, "rabbitmq-diagnostics", "-q", "check_port_connectivity",
            check=False,
        )  # fmt: skip

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """SIGKILL as a crash, SIGSTOP and SIGCONT as the cgroup freezer; SIGTERM a stop."""
        if sig == signal.SIGSTOP:
            _docker("pause", self.container)
        elif sig == signal.SIGCONT:
            _docker("unpause", self.container, check=False)
        elif sig == signal.SIGTERM:
            _docker("stop", "--time", str(int(timeout)), self.container, check=False)
        else:
            _docker("kill", "--signal", "SIGKILL", self.container, check=False)

    def stop(self) -> None:
        """Remove the container and its data."""
        _docker("rm", "--force", "--volumes", self.container, check=False)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {args[0]} failed: {done.stderr.strip()}")
    return done
