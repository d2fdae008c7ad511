"""Each process's resident memory at the start of a chaos run and at its end, for a soak: what a
process that stayed up the whole run holds at the end against what it held at the start; one
that was restarted (another pid) started over, and says so.

The no-Docker stack's processes are read from /proc; the compose stack's through `docker top`,
by their pid on the host.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Reading:
    pid: int
    rss_mb: float


def of_pids(pids: dict[str, int | None]) -> dict[str, Reading]:
    """The resident memory of each named process still alive."""
    readings = {}
    for name, pid in pids.items():
        if pid is not None and (rss := _rss_kb(pid)) is not None:
            readings[name] = Reading(pid, rss / 1024)
    return readings


def of_containers(containers: dict[str, str]) -> dict[str, Reading]:
    """The resident memory of the process in each named container (its main process: the
    one docker-init started), by `docker top`."""
    readings = {}
    for name, container in containers.items():
        top = subprocess.run(
            ["docker", "top", container, "-o", "pid,rss,args"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        rows = [line.split(None, 2) for line in top.stdout.splitlines()[1:]]
        main = [row for row in rows if len(row) == 3 and "python" in row[2].split()[0]]
        if top.returncode == 0 and main:
            readings[name] = Reading(int(main[0][0]), int(main[0][1]) / 1024)
    return readings


def _rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def compare(before: dict[str, Reading], after: dict[str, Reading]) -> list[dict[str, object]]:
    """One row per process: its memory at the start and at the end, and whether it was
    restarted in between."""
    return [
        {
            "process": name,
            "before_mb": round(before[name].rss_mb, 1) if name in before else None,
            "after_mb": round(after[name].rss_mb, 1) if name in after else None,
            "restarted": name not in before
            or name not in after
            or before[name].pid != after[name].pid,
        }
        for name in sorted({*before, *after})
    ]


def print_table(rows: list[dict[str, object]], console: Console) -> None:
    table = Table("process", "RSS at start", "RSS at end", "restarted in between")
    for row in rows:
        table.add_row(
            str(row["process"]),
            f"{row['before_mb']} MB" if row["before_mb"] is not None else "-",
            f"{row['after_mb']} MB" if row["after_mb"] is not None else "-",
            "yes" if row["restarted"] else "",
        )
    console.print(table)
