"""The system, declared once: its services, what each consumes (as the saga's definition,
shared/definition.py, says), the dashboard, and the processes that run them.

Everything that names a service, a process, a queue's bindings, a database or a default port
derives it from here, as the eventsourcing library's `System(pipes=...)` declares a whole system
in one place: the broker topology (shared/topology.py), the settings' defaults, the relay's
command line, the no-Docker stack, the tools and the tests. A unit test holds docker-compose.yml
to the same declaration.
"""

from dataclasses import dataclass
from enum import StrEnum

from shared.definition import ORDER_SAGA, SagaDefinition


class Mode(StrEnum):
    """How the saga is coordinated (SPEC.md, "Orchestration mode"): one mode per stack, the same
    for every process (SAGA_MODE)."""

    CHOREOGRAPHY = "choreography"
    ORCHESTRATION = "orchestration"


@dataclass(frozen=True)
class Component:
    """A process with an HTTP API, a database of its own and a broker user of its own."""

    name: str
    # The HTTP API's default port (SPEC.md, "HTTP").
    port: int

    @property
    def database(self) -> str:
        """Its database's default name; a stack of its own puts its prefix in place of saga."""
        return f"saga_{self.name}"

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Service(Component):
    """One service of the saga: a component with a work queue and a relay for its outbox."""

    # The routing keys its work queue is bound to in choreography (shared/definition.py):
    # exactly the keys of its HANDLERS table.
    consumes: tuple[str, ...] = ()
    # In orchestration: the commands a participant takes on its command queue (its
    # COMMAND_HANDLERS), or the replies the orchestrator takes on its event queue.
    commands: tuple[str, ...] = ()
    replies: tuple[str, ...] = ()

    @property
    def queue_kinds(self) -> tuple[str, ...]:
        """What its work queues carry, whichever the mode: events, and commands if it takes any."""
        return ("events", "commands") if self.commands else ("events",)

    def queue_kind(self, mode: Mode) -> str:
        """`events` or `commands`: what its work queue carries in that mode."""
        return "commands" if mode is Mode.ORCHESTRATION and self.commands else "events"

    def keys(self, mode: Mode) -> tuple[str, ...]:
        """The routing keys its work queue is bound to in that mode: a listener, which neither
        answers commands nor takes replies, takes its events in either."""
        if mode is Mode.CHOREOGRAPHY:
            return self.consumes
        return self.commands or self.replies or self.consumes

    @property
    def relay(self) -> str:
        """The process that publishes this service's outbox."""
        return f"{self.name}-relay"


def declared(name: str, port: int, saga: SagaDefinition = ORDER_SAGA) -> Service:
    """A service whose bindings are what the saga's definition says it takes."""
    return Service(
        name,
        port,
        consumes=tuple(event.routing_key for event in saga.choreography(name)),
        commands=tuple(command.routing_key for command in saga.commands(name)),
        replies=(
            tuple(event.routing_key for event in saga.replies()) if name == saga.coordinator else ()
        ),
    )


ORDER = declared("order", 8001)
PAYMENT = declared("payment", 8002)
INVENTORY = declared("inventory", 8003)

SERVICES: tuple[Service, ...] = (ORDER, PAYMENT, INVENTORY)
SERVICE_NAMES: tuple[str, ...] = tuple(service.name for service in SERVICES)
RELAYS: tuple[str, ...] = tuple(service.relay for service in SERVICES)
# The read model of the audit stream (dashboard/): no work queue, no outbox.
DASHBOARD = Component("dashboard", 8000)
COMPONENTS: tuple[Component, ...] = (*SERVICES, DASHBOARD)
COMPONENT_NAMES: tuple[str, ...] = tuple(component.name for component in COMPONENTS)
# Every long-running process of a stack, services first.
PROCESSES: tuple[str, ...] = SERVICE_NAMES + RELAYS + (DASHBOARD.name,)


def component_of(process: str) -> Component:
    """The component a process belongs to: `payment`, `payment-relay` and `payment-relay.2` (a
    second copy) all belong to payment; `dashboard` to the dashboard."""
    name = kind_of(process).removesuffix("-relay")
    for component in COMPONENTS:
        if component.name == name:
            return component
    raise KeyError(f"no component {name!r}; they are {', '.join(COMPONENT_NAMES)}")


def service_of(process: str) -> Service:
    """The service a process belongs to (see `component_of`)."""
    component = component_of(process)
    if not isinstance(component, Service):
        raise KeyError(f"{process} belongs to no service")
    return component


def kind_of(process: str) -> str:
    """What a process runs: `order-relay.2`, a second copy, runs what `order-relay` runs."""
    return process.partition(".")[0]


def is_relay(process: str) -> bool:
    return kind_of(process) in RELAYS


def is_service(process: str) -> bool:
    return kind_of(process) in SERVICE_NAMES
