"""Where a stack's pieces live: databases, broker, ports and files. The defaults are SPEC.md's
addresses; `isolated` gives a test or a tool a stack of its own."""

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from scripts.stack.instances import free_port
from shared.broker import node_urls
from shared.system import COMPONENT_NAMES, COMPONENTS, DASHBOARD, RELAYS, SERVICE_NAMES, Mode

ROOT = Path(__file__).resolve().parents[2]


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
    # A cluster's nodes on amqp_host, the first amqp_port; empty: one node, amqp_port. Every
    # broker URL then names them all (shared/broker.py), and each process fails over.
    amqp_ports: list[int] = field(default_factory=list)
    amqp_user: str = "guest"
    amqp_password: str = "guest"
    vhost: str = "/"
    ports: dict[str, int] = field(default_factory=lambda: {c.name: c.port for c in COMPONENTS})
    # Each relay's /metrics (METRICS_PORT); a second copy of a relay (`order-relay.2`) has none.
    relay_ports: dict[str, int] = field(
        default_factory=lambda: {relay: 9101 + i for i, relay in enumerate(RELAYS)}
    )
    var_dir: Path = ROOT / "var"
    # Extra environment for every process, and per kind of process (`order-relay`) or per copy
    # (`order-relay.2`, which also takes its kind's).
    env: dict[str, str] = field(default_factory=dict)
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Choreography or orchestration: SAGA_MODE for every process (SPEC.md).
    mode: Mode = Mode.CHOREOGRAPHY
    # How to reach rabbitmqctl for the vhost (a test's own broker node needs `-n NODE`).
    rabbitmqctl: list[str] = field(default_factory=lambda: ["rabbitmqctl"])

    @classmethod
    def from_env(cls) -> "StackConfig":
        """The stack the tools work on: the defaults, another no-Docker stack named by SAGA_*
        variables (see `to_env`; how the README walkthrough the tests replay reaches a test's
        stack), or, with SAGA_TARGET=compose, the docker compose stack (its own SAGA_*_HOST_PORT
        settings, scripts/stack/compose.py)."""
        env = os.environ
        if env.get("SAGA_TARGET") == "compose":
            from scripts.stack.compose import Compose  # compose builds on this module

            return Compose().config()
        config = cls()
        config.database_prefix = env.get("SAGA_DATABASE_PREFIX", config.database_prefix)
        config.vhost = env.get("SAGA_VHOST", config.vhost)
        config.var_dir = Path(env.get("SAGA_VAR_DIR", config.var_dir))
        config.mode = Mode(env.get("SAGA_MODE") or config.saved_mode() or config.mode)
        for name in COMPONENT_NAMES:
            if port := env.get(f"SAGA_{name.upper()}_HOST_PORT"):
                config.ports[name] = int(port)
        return config

    @classmethod
    def isolated(cls, name: str, var_dir: Path, **overrides: Any) -> "StackConfig":
        """A stack of its own, for a test or a tool: databases `<name>_<run>_*`, vhost
        `<name>-<run>`, free ports, so it never meets another run's messages."""
        run = uuid.uuid4().hex[:8]
        fields: dict[str, Any] = {
            "database_prefix": f"{name}_{run}",
            "vhost": f"{name}-{run}",
            "ports": {name: free_port() for name in COMPONENT_NAMES},
            "relay_ports": {relay: free_port() for relay in RELAYS},
            "var_dir": var_dir,
        }
        return cls(**(fields | overrides))

    def to_env(self) -> dict[str, str]:
        return {
            "SAGA_DATABASE_PREFIX": self.database_prefix,
            "SAGA_VHOST": self.vhost,
            "SAGA_VAR_DIR": str(self.var_dir),
            **{f"SAGA_{name.upper()}_HOST_PORT": str(self.ports[name]) for name in COMPONENT_NAMES},
        }

    def with_amqp_url(self, url: str) -> "StackConfig":
        """The same stack reached through another broker address (the tools' --amqp-url, which
        may name a cluster's nodes)."""
        nodes = [urlsplit(node) for node in node_urls(url)]
        parts = nodes[0]
        self.amqp_host = parts.hostname or self.amqp_host
        self.amqp_port = parts.port or self.amqp_port
        self.amqp_ports = [node.port or 5672 for node in nodes] if len(nodes) > 1 else []
        self.amqp_user = unquote(parts.username or self.amqp_user)
        self.amqp_password = unquote(parts.password or self.amqp_password)
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return self

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

    def amqp_url_of(self, service: str, ports: list[int] | None = None) -> str:
        """What a service and its relay use: their own broker user; on `ports` in place of the
        nodes' own (the fault proxy's links to them)."""
        user, password = self.amqp_user_of(service), self.amqp_password_of(service)
        return self._amqp_url(user, password, ports)

    @property
    def amqp_node_ports(self) -> list[int]:
        return self.amqp_ports or [self.amqp_port]

    def _amqp_url(self, user: str, password: str, ports: list[int] | None = None) -> str:
        nodes = ",".join(f"{self.amqp_host}:{port}" for port in ports or self.amqp_node_ports)
        return (
            f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{nodes}/"
            f"{quote(self.vhost, safe='')}"
        )

    def base_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def base_urls(self) -> dict[str, str]:
        """Every service's HTTP address, by service name."""
        return {service: self.base_url(service) for service in SERVICE_NAMES}

    @property
    def dashboard_url(self) -> str:
        return self.base_url(DASHBOARD.name)

    def metrics_addresses(self) -> dict[str, str]:
        """Where each process answers /metrics (`host:port`), by process name: what a
        Prometheus scrapes (scripts/stack/prometheus.py)."""
        return {
            **{name: f"127.0.0.1:{self.ports[name]}" for name in COMPONENT_NAMES},
            **{relay: f"127.0.0.1:{port}" for relay, port in self.relay_ports.items()},
        }

    def addresses(self) -> str:
        """`order :8001, payment :8002, inventory :8003, dashboard :8000`, as the stack's
        status lines say it."""
        return ", ".join(f"{name} :{self.ports[name]}" for name in COMPONENT_NAMES)

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    def save_mode(self) -> None:
        """Kept beside the pid files by `prepare`: a process started again later (`./saga start
        NAME`) and a tool run on the stack (`./saga check`) find the stack's mode there."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "mode").write_text(self.mode)

    def saved_mode(self) -> str | None:
        path = self.run_dir / "mode"
        return path.read_text().strip() if path.exists() else None
