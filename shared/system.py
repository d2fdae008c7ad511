"""The system, declared once: its services, what each consumes, and the processes that run them.

Everything that names a service, a process, a queue's bindings, a database or a default port
derives it from here, as the eventsourcing library's `System(pipes=...)` declares a whole system
in one place: the broker topology (shared/topology.py), the settings' defaults, the relay's
command line, the no-Docker stack, the tools and the tests. A unit test holds docker-compose.yml
to the same declaration.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    """One service of the saga: its HTTP API, its database, its work queue and its relay."""

    name: str
    # The HTTP API's default port (SPEC.md, "HTTP").
    port: int
    # The routing keys its work queue is bound to: exactly the keys of its HANDLERS table.
    consumes: tuple[str, ...]

    @property
    def relay(self) -> str:
        """The process that publishes this service's outbox."""
        return f"{self.name}-relay"

    @property
    def database(self) -> str:
        """Its database's default name; a stack of its own puts its prefix in place of saga."""
        return f"saga_{self.name}"

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


ORDER = Service(
    "order",
    8001,
    consumes=("payment.succeeded", "payment.failed", "inventory.reserved", "inventory.failed"),
)
PAYMENT = Service(
    "payment", 8002, consumes=("order.created", "order.cancelled", "inventory.failed")
)
INVENTORY = Service("inventory", 8003, consumes=("payment.succeeded", "order.cancelled"))

SERVICES: tuple[Service, ...] = (ORDER, PAYMENT, INVENTORY)
SERVICE_NAMES: tuple[str, ...] = tuple(service.name for service in SERVICES)
RELAYS: tuple[str, ...] = tuple(service.relay for service in SERVICES)
# Every long-running process of a stack, services first.
PROCESSES: tuple[str, ...] = SERVICE_NAMES + RELAYS


def service_of(process: str) -> Service:
    """The service a process belongs to: `payment`, `payment-relay` and `payment-relay.2` (a
    second copy) all belong to payment."""
    name = kind_of(process).removesuffix("-relay")
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(f"no service {name!r}; the services are {', '.join(SERVICE_NAMES)}")


def kind_of(process: str) -> str:
    """What a process runs: `order-relay.2`, a second copy, runs what `order-relay` runs."""
    return process.partition(".")[0]


def is_relay(process: str) -> bool:
    return kind_of(process) in RELAYS
