"""`./saga chaos --target compose` on the real engine: containers killed and started, paused and
unpaused, the broker's and the databases' among them, taken off their networks and put back,
the broker's memory and disk alarms raised and cleared, under load; then every invariant
holds."""

import json
import subprocess
import sys
from collections import Counter

from scripts.stack.compose import Compose
from tests.compose.conftest import remove, settings_of_own
from tests.readme import ROOT

# Each round: a service killed and one paused, a relay the same, the broker killed, a database
# killed, a memory and a disk alarm, a container off one of its networks.
ROUNDS = 4


def test_chaos_on_the_containers_loses_nothing_and_charges_nothing_twice() -> None:
    compose = Compose(env=settings_of_own("chaos"))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "scripts.chaos", "--target", "compose", "--seconds", "30",
             "--orders", "600", "--rate", "10", "--rounds", str(ROUNDS), "--seed", "11",
             "--json"],
            cwd=ROOT, env=compose.env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert run.returncode in (0, 1), run.stderr[-3000:]
        report = json.loads(run.stdout)
    finally:
        remove(compose)

    faults = report["faults"]
    assert not [fault for fault in faults if fault["error"]]
    done = Counter((fault["kind"], fault["action"]) for fault in faults)
    assert len(faults) >= 9 * ROUNDS, done
    for kind, action in [
        ("broker", "kill"), ("database", "kill"), ("link", "black hole"),
        ("alarm", "memory"), ("alarm", "disk"),
    ]:  # fmt: skip
        assert done[(kind, action)] >= ROUNDS, done
    assert sum(n for (_, action), n in done.items() if action == "freeze") >= 2 * ROUNDS
    assert report["load"]["orders"] == 600
    broken = {i["invariant"]: i["violations"] for i in report["invariants"] if i["violations"]}
    assert not broken, broken
    assert all(i["checked"] for i in report["invariants"]), report["invariants"]
