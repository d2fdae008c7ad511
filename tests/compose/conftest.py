"""docker-compose.yml run for real on this machine's Docker engine.

Every stack here is a compose project of its own (`sagatest-<run>-<what>`) on free host ports,
so two runs, or a run and a person's own `docker compose up`, never meet. It is brought up by
the project's own tooling (scripts/stack/compose.py: images resolved, stand-ins built from
Debian's packages where no registry answers, every container healthy) and removed with
`down --volumes` at the end, every time, leaving no container, network or volume behind.

Without an engine every test here is skipped, each with a line saying why (`-ra`), and the
session's header says so too (tests/conftest.py).
"""

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from scripts.stack import StackConfig
from scripts.stack.compose import BASE_FILE, HOST_PORTS, Compose
from scripts.stack.instances import free_port
from tests.conftest import ENGINE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ENGINE.missing:
        for item in items:
            if "tests/compose/" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=f"compose tests: {ENGINE.missing}"))


@dataclass
class ComposeStack:
    """A compose project brought up for a test: how to drive it and how to reach it."""

    compose: Compose
    config: StackConfig

    @property
    def env(self) -> dict[str, str]:
        """The environment the README's commands need to reach this project."""
        return self.compose.env

    def logs(self, service: str) -> list[str]:
        """Every line the service logged so far, without compose's `name-1 | ` prefix."""
        out = self.compose.run("logs", "--no-color", "--no-log-prefix", service)
        return out.splitlines()


def settings_of_own(what: str) -> dict[str, str]:
    """A project name and a free host port for every port the stack publishes."""
    return {
        "COMPOSE_PROJECT_NAME": f"sagatest-{uuid.uuid4().hex[:6]}-{what}",
        **{port.variable: str(free_port()) for port in HOST_PORTS},
    }


# The package's: removed once its last test ran, not left to burn the CPU (its healthchecks,
# its trace viewer) under the rest of the suite.
@pytest.fixture(scope="package")
def compose_stack() -> Iterator[ComposeStack]:
    """One stack of docker-compose.yml alone (its databases unpublished, as in production) for
    the flows, least-privilege, restart and operations tests, with the tracing profile: the
    walkthrough and chaos stacks run without it, as `docker compose up` does."""
    # The restart test keeps a saga in flight across `down` and `up`, which on a loaded machine
    # takes longer than the 30 s default deadline; it must complete, not time out.
    env = settings_of_own("stack") | {"SAGA_ORDER_DEADLINE_SECONDS": "300"}
    with brought_up(Compose(env=env, files=(BASE_FILE,), tracing=True)) as stack:
        yield stack


@contextlib.contextmanager
def brought_up(compose: Compose) -> Iterator[ComposeStack]:
    """The project up and healthy for the block, removed after it whatever happened."""
    try:
        compose.up()
        yield ComposeStack(compose, compose.config())
    finally:
        remove(compose)


def remove(compose: Compose) -> None:
    """`down --volumes`, then make sure nothing of the project is left."""
    compose.down(volumes=True)
    for kind in ("container", "network", "volume"):
        listed = subprocess.run(
            ["docker", kind, "ls", *(["--all"] if kind == "container" else []), "--quiet",
             "--filter", f"label=com.docker.compose.project={compose.project}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert not listed, f"{compose.project}: {kind}s left after down --volumes: {listed}"
