"""The orchestrator's commands: their data schemas and routing keys (SPEC.md, "Orchestration
mode").

A command asks one participant to do one step, on `saga.commands`; the participant answers with
the events of shared/events.py, which only the orchestrator consumes in that mode. Commands
travel in the same envelope, through the same outbox, relay and inbox as events.
"""

from pydantic import Field

from shared.events import EVENT_TYPES, Cents, Item, Message, Name, Text


class Command(Message):
    """A request for one step of the saga, sent by the orchestrator to one participant."""


class ChargePayment(Command):
    routing_key = "payment.charge"
    customer_id: Name
    amount_cents: Cents
    items: list[Item] = Field(min_length=1)


class RefundPayment(Command):
    routing_key = "payment.refund"
    reason: Text


class ReserveInventory(Command):
    routing_key = "inventory.reserve"
    items: list[Item] = Field(min_length=1)


class ReleaseInventory(Command):
    routing_key = "inventory.release"
    reason: Text


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.__name__: cls for cls in (ChargePayment, RefundPayment, ReserveInventory, ReleaseInventory)
}
COMMAND_KEYS: frozenset[str] = frozenset(cls.routing_key for cls in COMMAND_TYPES.values())
# Every type a message may carry, by name: what an envelope's `type` may say.
MESSAGE_TYPES: dict[str, type[Message]] = {**EVENT_TYPES, **COMMAND_TYPES}
MESSAGE_TYPE_BY_ROUTING_KEY: dict[str, type[Message]] = {
    cls.routing_key: cls for cls in MESSAGE_TYPES.values()
}
