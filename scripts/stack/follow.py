"""Follow several log files at once, each line prefixed with its process name (like compose)."""

import sys
import threading
import time
from pathlib import Path

COLOURS = ("\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m")
RESET = "\033[0m"


def follow(paths: dict[str, Path], stop: threading.Event, from_start: bool = False) -> None:
    """Print new lines of every file until `stop` is set."""
    width = max(len(name) for name in paths)
    colour = sys.stdout.isatty()
    offsets = {
        name: 0 if from_start or not path.exists() else path.stat().st_size
        for name, path in paths.items()
    }
    while not stop.is_set():
        idle = True
        for index, (name, path) in enumerate(paths.items()):
            if not path.exists():
                continue
            with path.open("rb") as log:
                log.seek(offsets[name])
                chunk = log.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            if not complete:
                continue
            idle = False
            offsets[name] += len(complete)
            prefix = f"{name:<{width}} |"
            if colour:
                prefix = f"{COLOURS[index % len(COLOURS)]}{prefix}{RESET}"
            for line in complete.decode(errors="replace").splitlines():
                print(f"{prefix} {line}", flush=True)
        if idle:
            time.sleep(0.1)
