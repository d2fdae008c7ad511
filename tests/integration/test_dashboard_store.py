"""The dashboard's projection store (dashboard/store.py) on a scratch database of its own: the
position it keeps is the authority on what was projected, so a message read twice (a follower
that reconnected, or resumed from an older position) is projected once, and a stream's offsets
may have gaps."""

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from dashboard import store
from dashboard.projection import Seen
from shared.db import Database
from tests.clients.database import rows, scratch_database
from tests.unit.test_dashboard_projection import seen


@pytest.fixture
async def dashboard() -> AsyncIterator[Database]:
    async with scratch_database("dashboard") as database:
        yield database


def saga_at(offsets: list[int]) -> dict[int, Seen]:
    """One saga's messages at those offsets (the gaps RabbitMQ leaves between segments)."""
    order_id = uuid4()
    kinds = ["OrderCreated", "PaymentSucceeded", "InventoryReserved", "OrderConfirmed"]
    return {
        offset: seen(order_id, kinds[n % len(kinds)], offset, ms=n)
        for n, offset in enumerate(offsets)
    }


async def projected(database: Database) -> list[tuple[int, bool]]:
    found = await rows(database, "SELECT stream_offset, repeat FROM stream_messages ORDER BY 1")
    return [(row.stream_offset, row.repeat) for row in found]


async def counts(database: Database) -> list[tuple[int, int]]:
    return [(row.events, row.repeats) for row in await rows(database, "SELECT * FROM sagas")]


async def test_messages_read_again_are_projected_once_and_gaps_are_kept(
    dashboard: Database,
) -> None:
    messages = saga_at([0, 1, 3, 4])
    _, generation = await store.position(dashboard)

    changed, position = await store.project(dashboard, [messages[0], messages[1]], generation)
    assert len(changed) == 1 and position == 2
    # Read again from offset 1, as a follower that reconnected from a stale position would.
    _, position = await store.project(
        dashboard, [messages[1], messages[3], messages[4]], generation
    )
    assert position == 5

    assert await projected(dashboard) == [(0, False), (1, False), (3, False), (4, False)]
    assert await counts(dashboard) == [(4, 0)]  # four events, none counted twice
    assert await store.position(dashboard) == (5, generation)


async def test_a_batch_wholly_behind_the_position_changes_nothing(dashboard: Database) -> None:
    messages = saga_at([0, 1, 2])
    _, generation = await store.position(dashboard)
    await store.project(dashboard, list(messages.values()), generation)

    changed, position = await store.project(dashboard, [messages[1]], generation)

    assert (changed, position) == (set(), 3)
    assert await counts(dashboard) == [(3, 0)]


async def test_a_follower_of_an_older_generation_is_refused_and_moves_nothing(
    dashboard: Database,
) -> None:
    messages = saga_at([0, 1])
    _, generation = await store.position(dashboard)
    await store.rebuild(dashboard)

    with pytest.raises(store.Rebuilt):
        await store.project(dashboard, list(messages.values()), generation)
    assert await store.position(dashboard) == (0, generation + 1)
    assert await projected(dashboard) == []
