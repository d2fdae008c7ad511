"""A handler driven alone, as the consumer drives it: one unit of work on a scratch database,
with the message's inbox row, the handler's statements and its outbox rows committed together
(cosmicpython's tests/unit/test_handlers.py drives each handler through a unit of work)."""

from dataclasses import dataclass
from typing import Any

from shared.db import Database
from shared.envelope import Envelope, wrap
from shared.events import Message
from shared.uow import Handler, UnitOfWork
from tests.clients.database import rows


@dataclass
class Handled:
    what: str  # the phrase the consumer's log line ends with
    emitted: list[Envelope]
    cause: Envelope

    @property
    def types(self) -> list[str]:
        return [envelope.type for envelope in self.emitted]

    def data(self, index: int = 0) -> dict[str, Any]:
        return self.emitted[index].data


async def apply(database: Database, service: str, handler: Handler, event: Message) -> Handled:
    """Deliver `event` (or a command) to `handler` in a new message; fail if the inbox calls it a
    duplicate."""
    cause = wrap(event, producer="test", causation_id=None)
    async with UnitOfWork(database, service) as uow:
        assert await uow.accept(cause), "a new message id is never a duplicate"
        what = await handler(uow, event)
        await uow.commit()
    return Handled(what, uow.emitted, cause)


async def outbox_of(database: Database, order_id: object) -> list[tuple[str, str]]:
    """(type, causation_id) of every outbox row of the order, in the order they were written."""
    found = await rows(
        database,
        """SELECT body ->> 'type' AS type, body ->> 'causation_id' AS causation_id FROM outbox
           WHERE body ->> 'correlation_id' = %(order_id)s ORDER BY id""",
        order_id=str(order_id),
    )
    return [(row.type, row.causation_id) for row in found]


async def count_of(database: Database, table: str, order_id: object) -> int:
    """How many rows of `table` (charges, refunds, reservations...) the order has."""
    query = f"SELECT count(*) AS n FROM {table} WHERE order_id = %(order_id)s"
    [found] = await rows(database, query, order_id=order_id)  # type: ignore[arg-type]
    return int(found.n)
