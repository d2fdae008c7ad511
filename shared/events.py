"""The events of the saga: their data schemas and routing keys (SPEC.md, "Events").

Every schema ignores unknown fields, so a newer producer never breaks an older consumer.
Amounts are integer cents.
"""

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=1_000_000)
    unit_price_cents: int = Field(ge=0, le=100_000_000)


_ITEMS = TypeAdapter(list[Item])


def items_json(items: list[Item]) -> str:
    """An order's lines as the JSON text a jsonb column takes (orders, reservations)."""
    return _ITEMS.dump_json(items).decode()


class Event(BaseModel):
    """Base of every event: the routing key is fixed per type, the order id ties a saga together."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    routing_key: ClassVar[str]

    order_id: UUID


class OrderCreated(Event):
    routing_key = "order.created"
    customer_id: str
    items: list[Item] = Field(min_length=1)
    total_cents: int = Field(ge=0)
    deadline_at: datetime


class PaymentSucceeded(Event):
    routing_key = "payment.succeeded"
    payment_id: UUID
    customer_id: str
    amount_cents: int = Field(ge=0)
    items: list[Item] = Field(min_length=1)


class PaymentFailed(Event):
    routing_key = "payment.failed"
    reason: Literal["insufficient_funds", "unknown_customer", "order_cancelled"]


class PaymentRefunded(Event):
    routing_key = "payment.refunded"
    payment_id: UUID
    refund_id: UUID
    amount_cents: int = Field(ge=0)
    reason: str


class InventoryReserved(Event):
    routing_key = "inventory.reserved"
    reservation_id: UUID
    items: list[Item] = Field(min_length=1)


class InventoryFailed(Event):
    routing_key = "inventory.failed"
    reason: Literal["out_of_stock", "unknown_sku", "order_cancelled"]
    sku: str | None = None


class InventoryReleased(Event):
    routing_key = "inventory.released"
    reservation_id: UUID
    reason: str


class OrderConfirmed(Event):
    routing_key = "order.confirmed"


class OrderRejected(Event):
    routing_key = "order.rejected"
    reason: str


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
