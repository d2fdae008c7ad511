"""What the open pages are told: the sagas that changed, and whether the dead letters did.

One `Live` per process; each page's server-sent event stream subscribes for as long as the
page is open. A subscriber that is not keeping up loses nothing that matters: changes merge
until it takes them, and the page then reloads what it shows.
"""

import asyncio
from dataclasses import dataclass, field
from uuid import UUID


@dataclass
class Change:
    sagas: set[UUID] = field(default_factory=set)
    dead_letters: bool = False

    def merge(self, other: "Change") -> None:
        self.sagas |= other.sagas
        self.dead_letters = self.dead_letters or other.dead_letters


class Subscription:
    def __init__(self) -> None:
        self._change = Change()
        self._ready = asyncio.Event()

    def offer(self, change: Change) -> None:
        self._change.merge(change)
        self._ready.set()

    async def next(self, within: float) -> Change:
        """What changed since the last call, waiting up to `within` seconds for something."""
        try:
            async with asyncio.timeout(within):
                await self._ready.wait()
        except TimeoutError:
            pass
        change, self._change = self._change, Change()
        self._ready.clear()
        return change


class Live:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, sagas: set[UUID], dead_letters: bool = False) -> None:
        if sagas or dead_letters:
            change = Change(set(sagas), dead_letters)
            for subscription in self._subscriptions:
                subscription.offer(change)
