"""Each module's own scratch databases of payment and inventory, migrated as the services
migrate theirs (tests/clients/database.py), dropped when the module is done."""

from collections.abc import AsyncIterator

import pytest

from shared.db import Database
from tests.clients.database import scratch_database


@pytest.fixture(scope="module")
async def payment() -> AsyncIterator[Database]:
    async with scratch_database("payment") as database:
        yield database


@pytest.fixture(scope="module")
async def inventory() -> AsyncIterator[Database]:
    async with scratch_database("inventory") as database:
        yield database
