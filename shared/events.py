"""The events of the saga: their data schemas and routing keys (SPEC.md, "Events").

Every schema ignores unknown fields, so a newer producer never breaks an older consumer.
Amounts are integer cents.

The types below are also what the HTTP APIs take, so that whatever a client or a producer can
send is refused by its schema, before it reaches PostgreSQL: a text column takes no NUL
character, a bigint no number past 64 bits, and a name with control characters in it would
make every log line that prints it unreadable. An integer is what JSON Schema calls one: a
number without a fraction (2.0 is 2), never `true` or `"2"`, which pydantic would take.
"""

from datetime import datetime
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter

BIGINT = 2**63 - 1
# No C0 control character (NUL included) and no DEL. Lone surrogates are refused by pydantic
# itself, as not valid Unicode.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def _a_number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


Integer = Annotated[int, BeforeValidator(_a_number)]
# A customer id or a sku: in paths, bodies, events and log lines.
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE)]
# A short free text carried by an event (a reason).
Text = Annotated[str, Field(max_length=200, pattern=PRINTABLE)]
Cents = Annotated[Integer, Field(ge=0, le=BIGINT)]


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: Name
    quantity: Integer = Field(ge=1, le=1_000_000)
    unit_price_cents: Integer = Field(ge=0, le=100_000_000)


_ITEMS = TypeAdapter(list[Item])


def items_json(items: list[Item]) -> str:
    """An order's lines as the JSON text a jsonb column takes (orders, reservations)."""
    return _ITEMS.dump_json(items).decode()


class Message(BaseModel):
    """Base of every event and command (shared/commands.py): the routing key is fixed per type,
    the order id ties a saga together."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    routing_key: ClassVar[str]

    order_id: UUID


class Event(Message):
    """Something that happened, announced on `saga.events`."""


class OrderCreated(Event):
    routing_key = "order.created"
    customer_id: Name
    items: list[Item] = Field(min_length=1)
    total_cents: Cents
    deadline_at: datetime


class PaymentSucceeded(Event):
    routing_key = "payment.succeeded"
    payment_id: UUID
    customer_id: Name
    amount_cents: Cents
    items: list[Item] = Field(min_length=1)


class PaymentFailed(Event):
    routing_key = "payment.failed"
    reason: Literal["insufficient_funds", "unknown_customer", "order_cancelled"]


class PaymentRefunded(Event):
    routing_key = "payment.refunded"
    payment_id: UUID
    refund_id: UUID
    amount_cents: Cents
    reason: Text


class InventoryReserved(Event):
    routing_key = "inventory.reserved"
    reservation_id: UUID
    items: list[Item] = Field(min_length=1)


class InventoryFailed(Event):
    routing_key = "inventory.failed"
    reason: Literal["out_of_stock", "unknown_sku", "order_cancelled"]
    sku: Name | None = None


class InventoryReleased(Event):
    routing_key = "inventory.released"
    reservation_id: UUID
    reason: Text


class OrderConfirmed(Event):
    routing_key = "order.confirmed"


class OrderRejected(Event):
    routing_key = "order.rejected"
    reason: Text


class OrderCancelled(Event):
    routing_key = "order.cancelled"
    reason: Literal["timeout", "customer"]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        OrderCreated,
        PaymentSucceeded,
        PaymentFailed,
        PaymentRefunded,
        InventoryReserved,
        InventoryFailed,
        InventoryReleased,
        OrderConfirmed,
        OrderRejected,
        OrderCancelled,
    )
}
TYPE_BY_ROUTING_KEY: dict[str, type[Event]] = {cls.routing_key: cls for cls in EVENT_TYPES.values()}
