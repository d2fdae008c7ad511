"""The dashboard process's long-lived parts, kept on `app.state.runtime`."""

from uuid import UUID

from fastapi import Request

from dashboard.follower import Follower
from dashboard.letters import DeadLetter, DeadLetters
from dashboard.live import Live
from dashboard.settings import DashboardSettings
from shared.db import Database
from shared.service import readiness


class Runtime:
    def __init__(self, settings: DashboardSettings) -> None:
        self.name = "dashboard"
        self.settings = settings
        self.database = Database(settings.database_url, settings.db_pool_size)
        self.live = Live()
        self.follower = Follower(self.database, settings.amqp_url, self.live, settings.batch_size)
        self.letters = DeadLetters(settings.amqp_url, self.database, settings.saga_mode)

    async def ready(self) -> dict[str, str]:
        return await readiness(self.database, self.follower.link)

    async def dead_letters_of(self, order_id: UUID) -> list[DeadLetter]:
        """The saga's messages in a DLQ now; none when the broker cannot be asked."""
        try:
            return [d for d in await self.letters.all() if d.order_id == order_id]
        except Exception:
            return []


async def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime
