"""Chaos in CI: hundreds of sagas with stock contention while services, relays and the broker
are killed and frozen at random, the database crashes, the broker raises resource alarms, and the
links to it and to the broker are reset, black-holed and slowed; zero violations of SPEC.md's
invariants.

scripts/chaos/ starts its own stack on its own RabbitMQ node and PostgreSQL cluster (the ones it
kills), every process reaching them through its fault proxy, drives scripts/perf/load.py
through the faults, waits for the system to go quiet and runs scripts/ops/check.py.
"""

import json
import subprocess
import sys
from collections import Counter
from typing import Any


def chaos(*args: str) -> dict[str, Any]:
    """Run the chaos tool; its summary, once every invariant held."""
    run = subprocess.run(
        [sys.executable, "-m", "scripts.chaos", "--orders", "600", "--rate", "10", "--json",
         *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.stdout, run.stderr[-3000:]
    summary: dict[str, Any] = json.loads(run.stdout)
    violations = [v for i in summary["invariants"] for v in i["violations"]]
    assert violations == [], violations[:20]
    assert run.returncode == 0
    assert not [f for f in summary["faults"] if f["error"]], summary["faults"]
    return summary


def test_random_faults_of_every_kind_on_two_of_each_leave_no_inconsistency() -> None:
    """Two processes of every service and relay (competing consumers, two reapers, two relays
    claiming one outbox) on this machine's RabbitMQ: killed and frozen, the broker killed, the
    PostgreSQL cluster of every database killed (crash recovery), memory and disk alarms
    raised on the broker, and the links from every process to it and to the broker reset,
    black-holed and slowed. One of each, in containers
    on RabbitMQ 4, is tests/compose/test_chaos.py."""
    summary = chaos("--seconds", "60", "--seed", "12", "--replicas", "2", "--rounds", "6")
    done = Counter((f["kind"], f["action"]) for f in summary["faults"])
    # Six planned rounds of eleven, then drawn ones.
    assert min(done[fault] for fault in [
        ("service", "kill"), ("service", "freeze"), ("relay", "kill"), ("relay", "freeze"),
        ("broker", "kill"), ("database", "kill"), ("alarm", "memory"), ("alarm", "disk"),
        ("link", "reset"), ("link", "black hole"), ("link", "delay"),
    ]) >= 6, done  # fmt: skip
    new_kinds = ("database", "link", "alarm")
    assert sum(n for (kind, _), n in done.items() if kind in new_kinds) >= 36, done
    hit = {f["target"] for f in summary["faults"] if f["kind"] == "link"}
    assert {link.partition("→")[2] for link in hit} == {"postgres", "rabbitmq"}, hit
    assert any(link.partition("→")[0].endswith(".2") for link in hit), hit  # second copies too
    assert_load_contended(summary["load"])


def assert_load_contended(load: dict[str, Any]) -> None:
    assert load["orders"] == 600
    assert sum(load["outcomes"].values()) == 600
    assert load["outcomes"]["CONFIRMED"] > 0
    assert load["reasons"].get("out_of_stock", 0) > 0  # the scarce skus really ran out
