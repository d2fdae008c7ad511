"""The alert rules (deploy/prometheus/alerts.yml) under Prometheus's own rule tester: each alert
fires on the series that should wake someone, not before its `for`, and not on healthy series.
promtool comes with Debian's `prometheus` package (.ci/run installs it)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.stack.prometheus import RULES

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="no promtool here (Debian's prometheus package; .ci/run installs it)"
)
RULE_TESTS = RULES.with_name("alerts_test.yml")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid_prometheus_rules() -> None:
    checked = promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_every_alert_fires_when_it_should_and_only_then() -> None:
    tested = promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = [line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines()
              if line.strip().startswith("- alert:")]  # fmt: skip
    untested = [name for name in alerts if f"alertname: {name}" not in RULE_TESTS.read_text()]
    assert len(alerts) == 7 and not untested, untested


def test_the_rule_tests_catch_an_alert_that_fires_too_early(tmp_path: Path) -> None:
    """The tests can fail: without its `for`, each alert fires before the tests say it may."""
    hasty = "\n".join(line for line in RULES.read_text().splitlines()
                      if not line.strip().startswith("for:"))  # fmt: skip
    (tmp_path / "alerts.yml").write_text(hasty)
    shutil.copy(RULE_TESTS, tmp_path)
    tested = promtool("test", "rules", tmp_path / "alerts_test.yml")
    assert tested.returncode != 0
    failed = tested.stdout + tested.stderr
    for alert in ("SagaProcessDown", "SagaStuckPastDeadline", "SagaDeadLetters",
                  "SagaNeedsAttention", "SagaRelayLagging",
                  "SagaCompensationRateHigh", "SagaServiceNotReady"):  # fmt: skip
        assert f"alertname: {alert}" in failed, failed
