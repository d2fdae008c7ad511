"""Whatever a client can send, every API answers as its OpenAPI document says, and loses nothing.

schemathesis drives each service's and the dashboard's document (examples, coverage of every
boundary, fuzzing, and stateful sequences that follow the links between operations) with every
check it has: no 5xx, every status code and body as declared, valid data accepted, invalid data
refused. Strings may hold NUL. Afterwards no process logged a traceback and the invariants hold
over everything the fuzzer placed, deposited and restocked.
"""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.stack import Stack, StackConfig
from shared.system import COMPONENT_NAMES
from tests.clients.invariants import wait_consistent
from tests.conftest import TEST_ENV

CONFIG = Path(__file__).parent / "fuzz" / "schemathesis.toml"
APIS = list(COMPONENT_NAMES)  # the services and the dashboard
SEED = 20261202  # the same cases every run; a failure is reproducible with `st replay`


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig.isolated("sagafuzz", tmp_path_factory.mktemp("fuzz"), env=TEST_ENV)
    with Stack(config).running() as stack:
        yield stack


def schemathesis(base_url: str, report_dir: Path) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [str(st), "--config-file", str(CONFIG), "run", f"{base_url}/openapi.json",
         "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
         "--max-examples", "40", "--generation-allow-x00", "true", "--seed", str(SEED),
         "--no-color", "--report-dir", str(report_dir)],
        capture_output=True, text=True, timeout=600, cwd=report_dir,  # its cache goes there
    )  # fmt: skip


@pytest.mark.parametrize("api", APIS)
def test_every_answer_is_declared_and_no_input_makes_a_server_error(
    fuzzed: Stack, api: str, tmp_path: Path
) -> None:
    run = schemathesis(fuzzed.config.base_url(api), tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated, run.stdout[-2000:]
    assert int(generated[1]) == int(generated[2]) > 100, generated[0]


def test_after_the_fuzzing_nothing_was_lost_and_nothing_failed(fuzzed: Stack) -> None:
    wait_consistent(
        fuzzed.config, 60, "every order the fuzzer placed to finish, with the invariants held"
    )
    for log in sorted(fuzzed.config.log_dir.glob("*.log")):
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{log.name}:\n{text[text.index('Traceback') - 300 :]}"
