"""`./saga chaos --target compose` on the real engine: containers killed and started, paused and
unpaused, the broker's among them, under load; then every invariant holds."""

import json
import subprocess
import sys

from scripts.stack.compose import Compose
from tests.compose.conftest import remove, settings_of_own
from tests.readme import ROOT

ROUNDS = 6  # each round: a service killed and one paused, a relay the same, the broker killed


def test_chaos_on_the_containers_loses_nothing_and_charges_nothing_twice() -> None:
    compose = Compose(env=settings_of_own("chaos"))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "scripts.chaos", "--target", "compose", "--seconds", "30",
             "--orders", "600", "--rate", "10", "--rounds", str(ROUNDS), "--seed", "11",
             "--kinds", "service,relay,broker", "--json"],
            cwd=ROOT, env=compose.env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert run.returncode in (0, 1), run.stderr[-3000:]
        report = json.loads(run.stdout)
    finally:
        remove(compose)

    faults = report["faults"]
    assert not [fault for fault in faults if fault["error"]]
    assert len(faults) >= 5 * ROUNDS
    assert sum(f["target"] == "broker" and f["action"] == "kill" for f in faults) >= ROUNDS
    assert sum(f["action"] == "freeze" for f in faults) >= ROUNDS
    assert report["load"]["orders"] == 600
    broken = {i["invariant"]: i["violations"] for i in report["invariants"] if i["violations"]}
    assert not broken, broken
    assert all(i["checked"] for i in report["invariants"]), report["invariants"]
