"""The image installs `[project] dependencies` only (Dockerfile): every module the processes
run (shared/, services/, relay/, dashboard/) imports with the `tools` extra's packages absent,
so a compose stack never meets a missing module that the venv of the tests has."""

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PROCESS_PACKAGES = ["shared", "services", "relay", "dashboard"]

# Import every module of the processes' packages while a finder refuses the tools' packages,
# as if they were not installed; print each module that failed and why.
IMPORT_ALL = """
import importlib, importlib.abc, pkgutil, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r} (the tools extra)")
        return None

sys.meta_path.insert(0, Absent())
failed = []
for package in PACKAGES:
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if module.name.endswith(".__main__"):  # a process's entry point: importing runs it
            continue
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            failed.append(f"{module.name}: {exc}")
print("\\n".join(failed))
"""


def tools_extra() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name for r in project["optional-dependencies"]["tools"]}


def test_the_processes_import_nothing_from_the_tools_extra() -> None:
    absent = {name.replace("-", "_") for name in tools_extra()}
    code = f"ABSENT = {sorted(absent)!r}\nPACKAGES = {PROCESS_PACKAGES!r}\n{IMPORT_ALL}"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"modules that need the tools extra:\n{done.stdout}"
