"""The README walkthroughs (choreographed and orchestrated), replayed: every `$ ./saga ...`
command between a walkthrough's markers runs on a fresh stack of its own, each printed line must
match, and each terminal line must appear in that process's log (tests/readme.py says what may
differ).
"""

import os
import subprocess
from pathlib import Path

import pytest

from scripts.stack import Stack, StackConfig
from tests.readme import ROOT, blocks, commands, missing_lines, normalize


@pytest.mark.parametrize(
    ("marker", "least"), [("walkthrough", 10), ("orchestrated-walkthrough", 8)]
)
def test_the_readme_walkthrough_runs_as_written(tmp_path: Path, marker: str, least: int) -> None:
    walkthrough = blocks(marker)
    assert len(walkthrough) >= least, "the walkthrough markers or blocks went missing"
    config = StackConfig.isolated("sagawalk", tmp_path / "var")
    env = {**os.environ, **config.to_env()}
    stack = Stack(config)
    try:
        for kind, lines in walkthrough:
            if kind == "console":
                for command, expected in commands(lines):
                    assert command.startswith("./saga "), command
                    done = subprocess.run(
                        command.split(), cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120,
                    )  # fmt: skip
                    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
                    printed = [normalize(line) for line in done.stdout.splitlines()]
                    assert printed == [normalize(line) for line in expected], command
            else:
                logged = {
                    process: stack.log_path(process).read_text().splitlines()
                    for process in {line.split("|")[0].strip() for line in lines}
                }
                missing = missing_lines(lines, logged)
                assert not missing, f"never logged: {missing}"
    finally:
        stack.teardown()  # whatever the README's commands left running


@pytest.mark.parametrize("line", ["12:00:01.234 payment   | order 3f2a9c1e | charged 5000"])
def test_normalize_keeps_what_matters(line: str) -> None:
    assert normalize(line) == "payment   | order <id> | charged 5000"
