"""The README's walkthroughs, read as the tests replay them: code blocks between markers, each
`$ ` line a command with the lines it prints, each text block lines a process logs.

Ids, ports, pids, paths, timestamps and a compose project's name are the only things allowed
to differ between the README and a run.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NORMALIZE = [
    (re.compile(r"^\d\d:\d\d:\d\d\.\d{3} "), ""),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<id>"),
    (re.compile(r"pid \d+"), "pid <n>"),
    (re.compile(r":\d{2,5}\b"), ":<port>"),
    (re.compile(r"logs in \S+"), "logs in <dir>"),
    (re.compile(r"compose stack \S+ is"), "compose stack <project> is"),
]


def normalize(line: str) -> str:
    for pattern, replacement in NORMALIZE:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def blocks(marker: str) -> list[tuple[str, list[str]]]:
    """The code blocks between `<!-- marker -->` and `<!-- /marker -->`, in order:
    ("console" | "text", lines)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
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


def missing_lines(expected: list[str], logged: dict[str, list[str]]) -> list[str]:
    """The text block's lines that the processes' logs do not hold (as often as the block
    has them). `logged` maps a process to its log lines."""
    missing = []
    for line in expected:
        process = line.split("|")[0].strip()
        count = sum(normalize(other) == normalize(line) for other in expected)
        log = [normalize(entry) for entry in logged[process]]
        if log.count(normalize(line)) < count:
            missing.append(line)
    return missing
