"""The envelope every message travels in, and the one place that turns bytes into an event or a
command.

A body that is not JSON, lacks a message id, names an unknown type or version, or fails its
schema (a NUL character or a number past 64 bits in a field included) is poison: `decode`
raises `PoisonMessage` with a short reason, and the consumer dead-letters it at once instead of
retrying something that can never succeed.
"""

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.commands import MESSAGE_TYPES
from shared.events import Message, Name

SCHEMA_VERSION = 1


class PoisonMessage(Exception):
    """A message that no retry can fix. `reason` is a short snake_case word for the DLQ header."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_id: UUID
    type: str
    version: int = Field(strict=True)
    occurred_at: datetime
    correlation_id: UUID
    causation_id: UUID | None
    producer: Name
    data: dict[str, Any]


def wrap(event: Message, producer: str, causation_id: UUID | None) -> Envelope:
    return Envelope(
        message_id=uuid4(),
        type=type(event).__name__,
        version=SCHEMA_VERSION,
        occurred_at=datetime.now(UTC),
        correlation_id=event.order_id,
        causation_id=causation_id,
        producer=producer,
        data=event.model_dump(mode="json"),
    )


def decode(body: bytes) -> tuple[Envelope, Message]:
    try:
        raw = json.loads(body)
    except ValueError as exc:  # not UTF-8, or not JSON
        raise PoisonMessage("not_json", str(exc)) from None
    except RecursionError:
        raise PoisonMessage("not_json", "nested too deeply") from None
    if not isinstance(raw, dict) or not raw.get("message_id"):
        raise PoisonMessage("no_message_id")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise PoisonMessage("invalid_envelope", _first_error(exc)) from None
    event_type = MESSAGE_TYPES.get(envelope.type)
    if event_type is None:
        raise PoisonMessage("unknown_type", envelope.type)
    if envelope.version != SCHEMA_VERSION:
        raise PoisonMessage("unknown_version", f"{envelope.type} v{envelope.version}")
    try:
        event = event_type.model_validate(envelope.data)
    except ValidationError as exc:
        raise PoisonMessage("invalid_data", _first_error(exc, "data.")) from None
    if event.order_id != envelope.correlation_id:
        raise PoisonMessage("invalid_data", "correlation_id differs from data.order_id")
    return envelope, event


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{prefix}{where}: {error['msg']}"
