"""The README's walkthrough in containers, replayed against the real engine: every command
between the docker-walkthrough markers (`./saga compose ...` and `docker compose ...`) runs as
written on a compose project of the test's own, each printed line must match, and each terminal
line must appear in `docker compose logs` of its container (tests/readme.py says what may
differ)."""

import subprocess

from scripts.stack.compose import Compose
from tests.compose.conftest import remove, settings_of_own
from tests.readme import ROOT, blocks, commands, missing_lines, normalize


def test_the_docker_walkthrough_runs_as_written() -> None:
    walkthrough = blocks("docker-walkthrough")
    assert len(walkthrough) >= 6, "the docker-walkthrough markers or blocks went missing"
    compose = Compose(env=settings_of_own("walk"))
    try:
        for kind, lines in walkthrough:
            if kind == "console":
                for command, expected in commands(lines):
                    assert command.startswith(("./saga compose ", "docker compose ")), command
                    done = subprocess.run(
                        command.split(), cwd=ROOT, env=compose.env, capture_output=True,
                        text=True, timeout=600,
                    )  # fmt: skip
                    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
                    printed = [normalize(line) for line in done.stdout.splitlines()]
                    assert printed == [normalize(line) for line in expected], command
            else:
                logged = {
                    process: compose.run(
                        "logs", "--no-color", "--no-log-prefix", process
                    ).splitlines()
                    for process in {line.split("|")[0].strip() for line in lines}
                }
                missing = missing_lines(lines, logged)
                assert not missing, f"never logged: {missing}"
    finally:
        remove(compose)  # whatever the README's commands left
