"""scripts/perf/profile.py's report: a CPU profile summed by package and listed by function."""

import cProfile
import json
import time
from pathlib import Path

import pytest

from scripts.perf.profile import package, place, report
from shared.envelope import decode
from tests.bodies import order_created_body


def test_functions_are_grouped_by_library_by_our_module_and_by_stdlib_module() -> None:
    assert package(json.__file__) == "stdlib json"
    assert package(pytest.__file__).startswith(("pytest", "_pytest"))
    assert package(str(Path("shared/envelope.py").resolve())) == "shared/envelope.py"
    assert package("~") == "C functions called from Python"
    assert place(json.decoder.__file__) == "stdlib json/decoder.py"


def test_the_report_lists_shares_that_add_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for _ in range(2000):
        decode(json.dumps(order_created_body()).encode())
    profile.disable()
    profile.dump_stats(tmp_path / "decode.prof")

    report(tmp_path / "decode.prof", top=100)
    printed = capsys.readouterr().out
    packages = printed.split("| package | share of CPU |")[1].split("| function |")[0]
    shares = [float(line.split("|")[2].strip().rstrip("%")) for line in packages.splitlines()[2:-1]]
    assert 99 <= sum(shares) <= 101
    assert "| shared/envelope.py |" in packages
    assert "| pydantic |" in packages or "C functions called from Python" in packages
