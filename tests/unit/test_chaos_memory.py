"""Chaos's memory report (scripts/chaos/memory.py): a process's resident memory at the start and
at the end, and whether it was restarted in between."""

import os
import subprocess
import sys

from scripts.chaos.memory import Reading, compare, of_pids


def test_a_live_process_is_read_and_a_dead_one_is_left_out() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    read = of_pids({"me": os.getpid(), "gone": child.pid, "never": None})
    assert set(read) == {"me"}
    assert read["me"].pid == os.getpid()
    assert 5 < read["me"].rss_mb < 4096


def test_a_new_pid_or_a_missing_reading_counts_as_a_restart() -> None:
    before = {"order": Reading(10, 50.0), "payment": Reading(11, 40.0), "relay": Reading(12, 30)}
    after = {
        "order": Reading(10, 52.04),
        "payment": Reading(99, 41.0),
        "dashboard": Reading(13, 60),
    }
    rows = {row["process"]: row for row in compare(before, after)}
    assert rows["order"] == {
        "process": "order", "before_mb": 50.0, "after_mb": 52.0, "restarted": False
    }  # fmt: skip
    assert rows["payment"]["restarted"] is True
    assert rows["relay"] == {
        "process": "relay", "before_mb": 30, "after_mb": None, "restarted": True
    }  # fmt: skip
    assert rows["dashboard"]["before_mb"] is None and rows["dashboard"]["restarted"] is True
