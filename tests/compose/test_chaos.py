"""`./saga chaos --target compose --cluster --mode orchestration` on the real engine, RabbitMQ 4
as a cluster of three containers (docker-compose.cluster.yml), the saga orchestrated by the order
service (the e2e chaos run is the choreographed one): containers killed and started, paused and
unpaused, the orchestrating order service's, the databases' and the broker nodes' among them, a
node partitioned away, containers taken off their networks and put back, the broker's memory and
disk alarms raised and cleared, under load; then every invariant holds, every saga instance
ended as its order did."""

import json
import subprocess
import sys
from collections import Counter

import pytest

from scripts.stack.compose import CLUSTER_FILE, COMPOSE_FILES, Compose
from shared.system import PROCESSES
from tests.compose.conftest import remove, settings_of_own
from tests.readme import ROOT

# Each round: a service killed and one paused, a relay the same, a database killed, a memory and
# a disk alarm, a broker node killed, one paused and one partitioned, a container off one of its
# networks.
ROUNDS = 2


# Longer than the suite's 300 s a test: the run's own subprocess bound is the one that counts.
@pytest.mark.timeout(900)
def test_chaos_on_the_containers_loses_nothing_and_charges_nothing_twice() -> None:
    compose = Compose(env=settings_of_own("chaos"), files=(*COMPOSE_FILES, CLUSTER_FILE))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "scripts.chaos", "--target", "compose", "--cluster",
             "--mode", "orchestration", "--seconds", "30",
             "--orders", "600", "--rate", "10", "--rounds", str(ROUNDS), "--seed", "5",
             "--json"],
            cwd=ROOT, env=compose.env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert run.returncode in (0, 1) and run.stdout.startswith("{"), run.stderr[-3000:]
        report = json.loads(run.stdout)
    finally:
        remove(compose)

    faults = report["faults"]
    failed = [(f["action"], f["target"], f["error"]) for f in faults if f["error"]]
    assert not failed, failed
    done = Counter((fault["kind"], fault["action"]) for fault in faults)
    assert len(faults) >= 11 * ROUNDS, done
    for kind, action in [
        ("database", "kill"), ("link", "black hole"), ("alarm", "memory"), ("alarm", "disk"),
        ("node", "kill"), ("node", "freeze"), ("node", "partition"),
    ]:  # fmt: skip
        assert done[(kind, action)] >= ROUNDS, done
    assert sum(n for (_, action), n in done.items() if action == "freeze") >= 3 * ROUNDS
    assert report["load"]["orders"] == 600
    held = {row["process"]: row for row in report["memory"]}
    assert set(held) == set(PROCESSES) and all(row["after_mb"] for row in held.values()), held
    broken = {i["invariant"]: i["violations"] for i in report["invariants"] if i["violations"]}
    assert not broken, broken
    assert all(i["checked"] for i in report["invariants"]), report["invariants"]
    assert report["mode"] == "orchestration"
    [sagas] = [i for i in report["invariants"] if i["invariant"].startswith("6.")]
    assert sagas["checked"] == 600
    # The orchestrator itself killed mid-saga, at least once (seed 5 kills it twice; the draws
    # depend on the seed alone, not on the machine).
    assert ("service", "kill", "order") in {(f["kind"], f["action"], f["target"]) for f in faults}
