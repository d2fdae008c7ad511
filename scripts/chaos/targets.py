"""What chaos hits: the no-Docker stack or the docker compose stack.

Both name their components as processes (`order`, `payment-relay.2`) or BROKER, and take the
same four faults: kill and start again, freeze and thaw.
"""

import contextlib
import signal
from dataclasses import dataclass
from typing import Protocol

from scripts.stack import Stack, StackConfig
from scripts.stack.compose import BROKER_CONTAINER, Compose
from scripts.stack.instances import Broker
from shared.system import PROCESSES

BROKER = "broker"


class Target(Protocol):
    """What chaos hits. Components are named as processes (`order`, `payment-relay.2`) or
    BROKER; kill and freeze need not wait for the component to be back."""

    @property
    def config(self) -> StackConfig: ...

    def processes(self) -> list[str]: ...
    def kill(self, name: str) -> None: ...
    def start(self, name: str) -> None: ...
    def freeze(self, name: str) -> None: ...
    def thaw(self, name: str) -> None: ...
    def heal(self) -> None: ...


@dataclass
class LocalTarget:
    """The no-Docker stack, on a PostgreSQL and a RabbitMQ node of its own."""

    stack: Stack
    rabbit: Broker
    extra_names: list[str]

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    def processes(self) -> list[str]:
        return list(self.stack.processes)

    def kill(self, name: str) -> None:
        if name == BROKER:
            self.rabbit.kill(signal.SIGKILL)
        else:
            self.stack.kill(name, signal.SIGKILL)

    def start(self, name: str) -> None:
        if name == BROKER:
            self.rabbit.start()
        else:
            self.stack.start(name)

    def freeze(self, name: str) -> None:
        self.stack.kill(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self.stack.kill(name, signal.SIGCONT)

    def heal(self) -> None:
        with contextlib.suppress(Exception):
            for name in self.stack.processes:
                self.stack.kill(name, signal.SIGCONT)
        if self.rabbit.pid is None:
            self.rabbit.start()
        for name in [*PROCESSES, *self.extra_names]:
            if not self.stack.is_running(name):
                self.stack.start(name)
        self.stack.wait_ready(timeout=60)


@dataclass
class ComposeTarget:
    """The docker compose stack: containers named as the processes, the broker `rabbitmq`."""

    compose: Compose
    config: StackConfig

    def processes(self) -> list[str]:
        return list(PROCESSES)

    def _container(self, name: str) -> str:
        return BROKER_CONTAINER if name == BROKER else name

    def kill(self, name: str) -> None:
        self.compose.kill(self._container(name))

    def start(self, name: str) -> None:
        self.compose.start(self._container(name))

    def freeze(self, name: str) -> None:
        self.compose.pause(self._container(name))

    def thaw(self, name: str) -> None:
        self.compose.unpause(self._container(name))

    def heal(self) -> None:
        self.compose.heal()
