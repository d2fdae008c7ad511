"""Chaos in CI: hundreds of sagas with stock contention while services, relays and the nodes of
a RabbitMQ cluster are killed and frozen at random, a node is partitioned away, the database
crashes, the broker raises resource alarms, and the links to the database and to each node are
reset, black-holed and slowed; zero violations of SPEC.md's invariants.

scripts/chaos/ starts its own stack on its own RabbitMQ nodes and PostgreSQL cluster (the ones it
kills), every process reaching them through its fault proxy, drives scripts/perf/load.py
through the faults, waits for the system to go quiet and runs scripts/ops/check.py.
"""

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shared.system import PROCESSES


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


# Planned rounds of every kind of fault, before any drawn one.
ROUNDS = 4


# Longer than the suite's 300 s a test: the run's own subprocess bound is the one that counts.
@pytest.mark.timeout(900)
def test_random_faults_of_every_kind_on_a_cluster_and_two_of_each_leave_no_inconsistency() -> None:
    """Two processes of every service and relay (competing consumers, two reapers, two relays
    claiming one outbox) on a RabbitMQ cluster of three nodes, every process given all three:
    processes killed and frozen; one node at a time killed, frozen or partitioned away, the
    one leading the most queues half of the time; the PostgreSQL cluster of every database
    killed (crash recovery); memory and disk alarms raised; the links from every process to
    PostgreSQL and to each node reset, black-holed and slowed. One broker killed whole under
    load is tests/e2e/test_outages.py; the same on the containers, tests/compose/test_chaos.py."""
    summary = chaos("--cluster", "--seconds", "60", "--seed", "12", "--replicas", "2",
                    "--rounds", str(ROUNDS))  # fmt: skip
    done = Counter((f["kind"], f["action"]) for f in summary["faults"])
    # ROUNDS planned rounds of thirteen, then drawn ones.
    assert min(done[fault] for fault in [
        ("service", "kill"), ("service", "freeze"), ("relay", "kill"), ("relay", "freeze"),
        ("database", "kill"), ("alarm", "memory"), ("alarm", "disk"),
        ("link", "reset"), ("link", "black hole"), ("link", "delay"),
        ("node", "kill"), ("node", "freeze"), ("node", "partition"),
    ]) >= ROUNDS, done  # fmt: skip
    new_kinds = ("database", "link", "alarm", "node")
    # Nine of each round: a database crash, three link faults, two alarms, three node faults.
    assert sum(n for (kind, _), n in done.items() if kind in new_kinds) >= 9 * ROUNDS, done
    nodes = {f["target"] for f in summary["faults"] if f["kind"] == "node"}
    assert len(nodes) >= 2 and nodes <= {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"}, nodes
    hit = {f["target"] for f in summary["faults"] if f["kind"] == "link"}
    assert {link.partition("→")[2].partition("-")[0] for link in hit} == {"postgres", "rabbitmq"}
    assert any(link.partition("→")[0].endswith(".2") for link in hit), hit  # second copies too
    assert_load_contended(summary["load"])
    # Every process's memory at the start and at the end, second copies included.
    held = {row["process"]: row for row in summary["memory"]}
    assert set(held) >= {*PROCESSES, "order.2", "payment-relay.2"}, held
    assert all(row["before_mb"] and row["after_mb"] for row in held.values()), held


def assert_load_contended(load: dict[str, Any]) -> None:
    assert load["orders"] == 600
    assert sum(load["outcomes"].values()) == 600
    assert load["outcomes"]["CONFIRMED"] > 0
    assert load["reasons"].get("out_of_stock", 0) > 0  # the scarce skus really ran out


def test_a_soak_stopped_early_checks_what_it_placed_and_writes_its_report(
    tmp_path: Path,
) -> None:
    """`./saga soak` (scripts/chaos/soak.py) on one broker node, one copy of each process: it
    prints its progress as it goes; Ctrl-C stops the faults and the orders, and what was placed
    is waited for and checked, invariant 7 included, and written to the report."""
    report = tmp_path / "soak.json"
    soak = subprocess.Popen(
        [sys.executable, "-m", "scripts.chaos.soak", "--minutes", "10", "--rate", "5",
         "--every", "5", "--no-cluster", "--replicas", "1", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert soak.stdout is not None
    said: list[str] = []
    try:
        for line in soak.stdout:  # its progress: two lines, then stop it as a person would
            said.append(line)
            if sum("sagas placed" in seen for seen in said) == 2:
                soak.send_signal(signal.SIGINT)
                break
        said += soak.stdout.readlines()
        assert soak.wait(timeout=300) == 0, "".join(said)[-3000:]
    finally:
        if soak.poll() is None:
            soak.kill()
    summary = json.loads(report.read_text())
    assert summary["stopped_early"] is True and summary["seconds"] < 300
    assert [reading["seconds"] for reading in summary["progress"]][:2] == [5, 10]
    assert summary["load"]["orders"] >= 25
    checked = {i["invariant"].split(".")[0]: i for i in summary["invariants"]}
    assert set(checked) == {"1", "2", "3", "4a", "4b", "4c", "5", "7"}
    assert all(i["violations"] == [] and i["checked"] > 0 for i in checked.values()), checked
    assert "stopping: no more faults, no more orders" in "".join(said)
