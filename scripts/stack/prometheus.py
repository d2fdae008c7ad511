"""A real Prometheus (Debian's `prometheus` package) scraping a no-Docker stack's processes, with
the saga's alert rules (deploy/prometheus/alerts.yml): `./saga up --prometheus`, and the tests.

Every process is one target of the job `saga`, labelled with its process name (`payment`,
`payment-relay`, `dashboard`), so `up{process="payment"}` and the rules' `{{ $labels.process }}`
name what is down.
"""

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.stack.config import ROOT, StackConfig
from scripts.stack.instances import _Instance, free_port

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DEFAULT_PORT = 9090


def scrape_config(config: StackConfig, interval: str = "5s") -> dict[str, Any]:
    """prometheus.yml for the stack (JSON is YAML): one target per process."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "saga",
                "static_configs": [
                    {"targets": [address], "labels": {"process": process}}
                    for process, address in config.metrics_addresses().items()
                ],
            }
        ],
    }


class Prometheus(_Instance):
    """`prometheus` on a data directory of its own, on 127.0.0.1."""

    name = "prometheus"

    def __init__(self, config: StackConfig, base_dir: Path, port: int | None = None,
                 interval: str = "5s") -> None:  # fmt: skip
        super().__init__(base_dir, port or free_port())
        self.config = config
        self.interval = interval
        self.url = f"http://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str | None:
        return shutil.which("prometheus")

    def start(self, timeout: float = 60.0) -> None:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("no prometheus here: apt-get install prometheus (Debian's package)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.base_dir / "prometheus.yml"
        config_file.write_text(json.dumps(scrape_config(self.config, self.interval), indent=2))
        self._spawn([
            binary, f"--config.file={config_file}",
            f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ])  # fmt: skip
        assert self.process is not None
        (self.base_dir / "prometheus.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited; see {self.base_dir / 'prometheus.out'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready within {timeout} s")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Prometheus holds now, pending and firing."""
        reply = httpx.get(f"{self.url}/api/v1/alerts", timeout=5)
        reply.raise_for_status()
        alerts: list[dict[str, Any]] = reply.json()["data"]["alerts"]
        return alerts

    def query(self, expression: str) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=5)
        reply.raise_for_status()
        result: list[dict[str, Any]] = reply.json()["data"]["result"]
        return result


def stop_detached(base_dir: Path) -> bool:
    """Stop the Prometheus `up --detach --prometheus` left running, by its pid file."""
    pid_file = base_dir / "prometheus.pid"
    if not pid_file.exists():
        return False
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.killpg(int(pid_file.read_text()), signal.SIGTERM)
    pid_file.unlink()
    return True
