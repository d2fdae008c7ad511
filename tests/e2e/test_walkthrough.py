"""The README walkthrough, replayed: every `$ ./saga ...` command between the walkthrough markers
runs on a fresh stack of its own, each printed line must match, and each terminal line must
appear in that process's log. Ids, ports, pids and paths are the only things allowed to differ.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from scripts.stack import Stack, StackConfig

ROOT = Path(__file__).resolve().parents[2]
NORMALIZE = [
    (re.compile(r"^\d\d:\d\d:\d\d\.\d{3} "), ""),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<id>"),
    (re.compile(r"pid \d+"), "pid <n>"),
    (re.compile(r":\d{2,5}\b"), ":<port>"),
    (re.compile(r"logs in \S+"), "logs in <dir>"),
]


def normalize(line: str) -> str:
    for pattern, replacement in NORMALIZE:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def walkthrough() -> list[tuple[str, list[str]]]:
    """The walkthrough's code blocks, in order: ("console" | "text", lines)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- walkthrough -->")[1].split("<!-- /walkthrough -->")[0]
    return [
        (kind, body.strip("\n").splitlines())
        for kind, body in re.findall(r"```(console|text)\n(.*?)```", section, re.S)
    ]


def commands(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Split a console block into (command, expected output lines)."""
    steps: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = walkthrough()
    assert len(blocks) >= 10, "the walkthrough markers or blocks went missing"
    config = StackConfig.isolated("sagawalk", tmp_path / "var")
    env = {**os.environ, **config.to_env()}
    stack = Stack(config)
    try:
        for kind, lines in blocks:
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
                for line in lines:
                    process = line.split("|")[0].strip()
                    wanted = normalize(line.removeprefix(f"{line.split('|')[0]}| "))
                    count = sum(normalize(other) == normalize(line) for other in lines)
                    log = [
                        normalize(entry.split("| ", 1)[1])
                        for entry in stack.log_path(process).read_text().splitlines()
                        if "| " in entry
                    ]
                    assert log.count(wanted) >= count, f"{process} never logged: {line}"
    finally:
        stack.teardown()  # whatever the README's commands left running


@pytest.mark.parametrize("line", ["12:00:01.234 payment   | order 3f2a9c1e | charged 5000"])
def test_normalize_keeps_what_matters(line: str) -> None:
    assert normalize(line) == "payment   | order <id> | charged 5000"
