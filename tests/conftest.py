"""The test run's own stack: its own databases, vhost and ports, so two runs never meet.

Unit tests need none of it; the `stack` fixture starts the processes on first use and stops
them, by pid, when the session ends.
"""

from collections.abc import Iterator

import pytest

from scripts.stack import Stack, StackConfig
from tests.clients.api import SagaClient

# Short retry delays keep the retry tests quick; everything else is the default.
TEST_ENV = {"RETRY_DELAYS_MS": "[200, 500, 1000]", "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig.isolated("sagatest", tmp_path_factory.mktemp("stack"), env=TEST_ENV)
    with Stack(config).running() as stack:
        yield stack


@pytest.fixture(scope="session")
def saga(stack: Stack) -> Iterator[SagaClient]:
    with SagaClient(stack) as client:
        yield client
