"""What a long chaos run (a soak) says as it goes: every so often one line with the faults so
far by kind, the sagas placed and how they ended, and the processes' resident memory; each
reading kept for the run's report.

The sagas are counted in the order service's database (as its administrator), so a count costs
the stack one query; while that database is down the line says so and the run goes on.
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from rich.console import Console

from scripts.chaos.faults import Chaos
from scripts.chaos.targets import Target

BY_STATUS = "SELECT status, count(*) FROM orders GROUP BY status"


@dataclass
class Watch:
    target: Target
    chaos: Chaos
    console: Console
    every_seconds: float
    readings: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            reading = self.read()
            self.readings.append(reading)
            self.console.print(line_of(reading), soft_wrap=True)

    def read(self) -> dict[str, Any]:
        """One reading of the run now."""
        faults = Counter(f"{fault.action} {fault.kind}" for fault in list(self.chaos.faults))
        memory = {name: round(r.rss_mb, 1) for name, r in self.target.resident_memory().items()}
        return {
            "seconds": round(time.monotonic() - self._started),
            "faults": dict(sorted(faults.items())),
            "orders": self._orders(),
            "memory_mb": memory,
        }

    def _orders(self) -> dict[str, int] | str:
        url = self.target.config.admin_database_url("order").replace("+psycopg", "")
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                return {status: count for status, count in conn.execute(BY_STATUS).fetchall()}
        except psycopg.Error as exc:
            return f"unavailable ({str(exc).strip().splitlines()[0]})"


def line_of(reading: dict[str, Any]) -> str:
    """A reading as one line for the terminal."""
    minutes, seconds = divmod(reading["seconds"], 60)
    faults = reading["faults"]
    orders = reading["orders"]
    if isinstance(orders, dict):
        placed = sum(orders.values())
        ended = ", ".join(f"{n} {s}" for s, n in sorted(orders.items()))
        sagas = f"{placed} sagas placed: {ended}"
    else:
        sagas = f"sagas: order database {orders}"
    memory = reading["memory_mb"]
    heaviest = max(memory.items(), key=lambda item: item[1], default=("-", 0.0))
    return (
        f"{minutes:3d}:{seconds:02d}  {sum(faults.values())} faults "
        f"({', '.join(f'{n} {kind}' for kind, n in faults.items()) or 'none yet'}); {sagas}; "
        f"memory {sum(memory.values()):.0f} MB in {len(memory)} processes, "
        f"most {heaviest[0]} {heaviest[1]:.1f} MB"
    )
