"""What chaos hits: the no-Docker stack or the docker compose stack.

Both name their components as processes (`order`, `payment-relay.2`), BROKER or a database,
which are killed and started again, or frozen and thawed; and their links, from a process to its
database or to the broker, on which each puts the faults it can (`link_actions`):
- the no-Docker stack reaches its servers through a fault proxy (scripts/chaos/proxy.py), a
  link per process and server: reset, black hole, delay;
- compose takes a container off one of its networks and puts it back (`docker network
  disconnect`, `connect`): a black hole, the packets dropped.
Both raise and clear the broker's resource alarms with rabbitmqctl. On a cluster of three
RabbitMQ nodes (--cluster, on either target), a NODE is killed, frozen or partitioned away from
the other two (through the Erlang distribution, `cut_off`), one at a time, the node leading the
most queues as often as any other.
"""

import contextlib
import json
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from scripts.chaos import alarms, memory
from scripts.chaos.proxy import FaultProxy, broker_name
from scripts.stack import Stack, StackConfig
from scripts.stack.compose import (
    BROKER_CONTAINER,
    CLUSTER_FILE,
    CLUSTER_NODES,
    Compose,
    ComposeError,
)
from scripts.stack.instances import (
    Broker,
    OwnPostgres,
    OwnRabbitMQ,
    OwnRabbitMQCluster,
    cut_off,
    rejoin,
)
from shared.system import COMPONENT_NAMES, PROCESSES

BROKER = "broker"
DATABASE = "database"
LINK = "link"
ALARM = "alarm"  # a resource alarm on the broker: `memory` or `disk`
NODE = "node"  # one node of a RabbitMQ cluster: `rabbitmq-1` to `rabbitmq-3`
# The local stack's one PostgreSQL cluster, which holds every database.
OWN_POSTGRES = "postgres"
# The latency a slowed link adds to every chunk, both ways.
LINK_DELAY_SECONDS = 0.1


class Target(Protocol):
    """What chaos hits. Components are named as processes (`order`, `payment-relay.2`) or
    BROKER; kill and freeze need not wait for the component to be back."""

    @property
    def config(self) -> StackConfig: ...

    @property
    def link_actions(self) -> tuple[str, ...]: ...

    def processes(self) -> list[str]: ...
    def databases(self) -> list[str]: ...
    def nodes(self) -> list[str]: ...
    def leader(self) -> str: ...
    def partition(self, node: str) -> None: ...
    def reconnect(self, node: str) -> None: ...
    def links(self) -> list[str]: ...
    def disturb(self, link: str, action: str) -> None: ...
    def mend(self, link: str) -> None: ...
    def alarm(self, kind: str, on: bool) -> None: ...
    def kill(self, name: str) -> None: ...
    def start(self, name: str) -> None: ...
    def freeze(self, name: str) -> None: ...
    def thaw(self, name: str) -> None: ...
    def heal(self) -> None: ...
    def resident_memory(self) -> dict[str, memory.Reading]: ...


@dataclass
class LocalTarget:
    """The no-Docker stack, on a PostgreSQL cluster (its every database) and a RabbitMQ node (or
    a cluster of three) of its own, each process reaching them through links of the fault
    proxy."""

    stack: Stack
    rabbit: Broker
    postgres: OwnPostgres
    proxy: FaultProxy
    extra_names: list[str]
    link_actions: tuple[str, ...] = ("reset", "black hole", "delay")

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    def processes(self) -> list[str]:
        return list(self.stack.processes)

    def databases(self) -> list[str]:
        return [OWN_POSTGRES]

    def nodes(self) -> list[str]:
        return list(self._nodes)

    @property
    def _nodes(self) -> dict[str, OwnRabbitMQ]:
        if not isinstance(self.rabbit, OwnRabbitMQCluster):
            return {}
        nodes = self.rabbit.nodes
        return {broker_name(i, len(nodes)): node for i, node in enumerate(nodes, 1)}

    def leader(self) -> str:
        """The node that leads the most queues (at first the one that declared them all)."""
        assert isinstance(self.rabbit, OwnRabbitMQCluster)
        listed = self.rabbit.queue_leaders(self.config.vhost)
        return most_led(listed, {node.node: name for name, node in self._nodes.items()})

    def partition(self, node: str) -> None:
        assert isinstance(self.rabbit, OwnRabbitMQCluster)
        self.rabbit.partition(self._nodes[node])

    def reconnect(self, node: str) -> None:
        assert isinstance(self.rabbit, OwnRabbitMQCluster)
        self.rabbit.reconnect(self._nodes[node])
        self._nodes[node].ctl("await_startup", timeout=180)  # serving again: one at a time

    def links(self) -> list[str]:
        return list(self.proxy.links)

    def resident_memory(self) -> dict[str, memory.Reading]:
        return memory.of_pids({name: self.stack.pid_of(name) for name in self.stack.processes})

    def disturb(self, link: str, action: str) -> None:
        if action == "reset":
            self.proxy.links[link].reset()
        elif action == "black hole":
            self.proxy.links[link].black_hole()
        else:
            self.proxy.links[link].delay(LINK_DELAY_SECONDS)

    def mend(self, link: str) -> None:
        self.proxy.links[link].heal()

    def alarm(self, kind: str, on: bool) -> None:
        (alarms.raise_alarm if on else alarms.clear_alarm)(self.rabbit.rabbitmqctl, kind)

    def kill(self, name: str) -> None:
        if name == BROKER:
            self.rabbit.kill(signal.SIGKILL)
        elif name in self._nodes:
            self._nodes[name].kill(signal.SIGKILL)
        elif name == OWN_POSTGRES:
            self.postgres.kill(signal.SIGKILL)
        else:
            self.stack.kill(name, signal.SIGKILL)

    def start(self, name: str) -> None:
        if name in (BROKER, *self._nodes):
            self.rabbit.start()  # a cluster starts whichever of its nodes is down
        elif name == OWN_POSTGRES:
            self.postgres.start()
        else:
            self.stack.start(name)

    def freeze(self, name: str) -> None:
        if name in self._nodes:
            self._nodes[name].kill(signal.SIGSTOP)
        else:
            self.stack.kill(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        if name in self._nodes:
            self._nodes[name].kill(signal.SIGCONT)
            self._nodes[name].ctl("await_startup", timeout=180)
        else:
            self.stack.kill(name, signal.SIGCONT)

    def heal(self) -> None:
        self.proxy.heal()
        if isinstance(self.rabbit, OwnRabbitMQCluster):
            for node in self.rabbit.nodes:
                node.kill(signal.SIGCONT)
                if node.pid is not None:
                    self.rabbit.reconnect(node)
            self.rabbit.start()  # whichever node is down
        elif self.rabbit.pid is None:
            self.rabbit.start()
        with contextlib.suppress(Exception):
            for name in self.stack.processes:
                self.stack.kill(name, signal.SIGCONT)
        if self.postgres.pid is None:
            self.postgres.start()
        for name in [*PROCESSES, *self.extra_names]:
            if not self.stack.is_running(name):
                self.stack.start(name)
        self.stack.wait_ready(*PROCESSES, *self.extra_names, timeout=60)


def most_led(leaders: list[str], names: dict[str, str]) -> str:
    """Of the nodes named by `names` (Erlang node name: the target's), the one that leads the
    most of `leaders` (each queue's leader, as rabbitmqctl lists them); the first if none."""
    led = Counter(names[leader] for leader in leaders if leader in names)
    return led.most_common(1)[0][0] if led else next(iter(names.values()))


@dataclass
class ComposeTarget:
    """The docker compose stack: containers named as the processes, the broker `rabbitmq`, the
    databases `postgres-order` and so on; a link is a process's network (`order/order-db`)."""

    compose: Compose
    config: StackConfig
    link_actions: tuple[str, ...] = ("black hole",)
    _cut: set[str] = field(default_factory=set)

    def processes(self) -> list[str]:
        return list(PROCESSES)

    def databases(self) -> list[str]:
        return [f"postgres-{name}" for name in COMPONENT_NAMES]

    def links(self) -> list[str]:
        return self._networks

    @cached_property
    def _networks(self) -> list[str]:
        """Each process's networks to its database and to the broker (not `public`, where the
        load comes in), as compose reads its files."""
        services = json.loads(self.compose.run("config", "--format", "json"))["services"]
        return [
            f"{process}/{network}"
            for process in PROCESSES
            for network in services[process].get("networks", {})
            if network != "public"
        ]

    def resident_memory(self) -> dict[str, memory.Reading]:
        containers = {c["Service"]: c["Name"] for c in self.compose.ps()}
        return memory.of_containers({name: containers[name] for name in PROCESSES})

    def nodes(self) -> list[str]:
        """With docker-compose.cluster.yml, its three nodes; else none: one broker."""
        return list(CLUSTER_NODES) if CLUSTER_FILE in self.compose.files else []

    def leader(self) -> str:
        """The node that leads the most queues, asked of each node in turn until one serves."""
        failure: Exception | None = None
        for node in self.nodes():
            try:
                asked = ("exec", "-T", node, "rabbitmqctl", "-q", "list_queues", "leader")
                listed = self.compose.run(*asked, "--no-table-headers", timeout=60).split()
                break
            except (ComposeError, subprocess.TimeoutExpired) as exc:
                failure = exc
        else:
            raise ComposeError(f"no node of the cluster lists its queues: {failure}")
        return most_led(listed, {f"rabbit@{node}": node for node in self.nodes()})

    def partition(self, node: str) -> None:
        """As on the local target: by the Erlang distribution (scripts/stack/instances.py).
        Not `docker network disconnect`: the node comes back on another address, which
        RabbitMQ's stream replication does not follow."""
        self._eval(node, cut_off(self._peers_of(node)))

    def reconnect(self, node: str) -> None:
        self._eval(node, rejoin(self._peers_of(node)))
        self._await_node(node)

    def _peers_of(self, node: str) -> list[str]:
        return [f"rabbit@{peer}" for peer in self.nodes() if peer != node]

    def _eval(self, node: str, expression: str) -> None:
        self.compose.run("exec", "-T", node, "rabbitmqctl", "eval", expression, timeout=60)

    def disturb(self, link: str, action: str) -> None:
        process, network = link.split("/")
        self.compose.disconnect(process, network)
        self._cut.add(link)

    def mend(self, link: str) -> None:
        process, network = link.split("/")
        self.compose.connect(process, network)
        self._cut.discard(link)

    def alarm(self, kind: str, on: bool) -> None:
        command = (alarms.RAISE if on else alarms.CLEAR)[kind]
        rabbitmqctl = ("exec", "-T", BROKER_CONTAINER, "rabbitmqctl")
        try:
            self.compose.run(*rabbitmqctl, *command)
        except ComposeError:  # a broker just started is still booting: wait for it, once
            self.compose.run(*rabbitmqctl, "await_startup", timeout=120)
            self.compose.run(*rabbitmqctl, *command)

    def _container(self, name: str) -> str:
        return BROKER_CONTAINER if name == BROKER else name

    def kill(self, name: str) -> None:
        self.compose.kill(self._container(name))

    def start(self, name: str) -> None:
        self.compose.start(self._container(name))
        self._await_node(name)

    def freeze(self, name: str) -> None:
        self.compose.pause(self._container(name))

    def thaw(self, name: str) -> None:
        self.compose.unpause(self._container(name))
        self._await_node(name)

    def _await_node(self, name: str) -> None:
        """A cluster's node back and serving before the next fault: one node at a time."""
        if name not in self.nodes():
            return
        deadline = time.monotonic() + 180
        while True:  # until its Erlang VM takes the CLI's call, await_startup fails at once
            try:
                self.compose.run("exec", "-T", name, "rabbitmqctl", "await_startup", timeout=180)
                return
            except ComposeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def heal(self) -> None:
        for link in list(self._cut):
            self.mend(link)
        self.compose.heal()
