"""The Prometheus alerting rules shipped in deployments/prometheus: valid, unit-tested with
promtool for every rule (above the threshold fires, at it stays silent), and in step with the
settings the embedded ops-alerts flow uses."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from posegen.config import Settings

RULES_DIR = Path(__file__).resolve().parents[2] / "deployments" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts_test.yml"

# Each rule's threshold, as the setting that states it for the ops-alerts flow.
SETTING_OF_RULE = {
    "PosegenBackgroundChangeFailureRate": "alert_failure_rate",
    "PosegenBackgroundChangeQueueDepth": "alert_queue_depth",
    "PosegenBackgroundChangeProcessingTime": "alert_processing_seconds",
    "PosegenCreditRefundRate": "alert_refund_rate",
    "PosegenPoseRequestsPending": "alert_pending_requests",
}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make prometheus` installs Debian's prometheus package")
    return found


def _rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_rule_has_a_firing_and_a_silent_case() -> None:
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    assert sorted(cases) == sorted(SETTING_OF_RULE)
    for name, fires in cases.items():
        assert sorted(set(fires)) == [False, True], name


def test_rule_thresholds_are_the_settings_defaults() -> None:
    """The rules cannot read settings: this keeps the two ways of alerting on the same values."""
    defaults = Settings()
    rules = {str(rule["alert"]): str(rule["expr"]) for rule in _rules()}
    assert sorted(rules) == sorted(SETTING_OF_RULE)
    for name, expr in rules.items():
        threshold = re.search(r">\s*([0-9.]+)\s*$", expr.strip())
        assert threshold is not None, name
        assert float(threshold.group(1)) == float(getattr(defaults, SETTING_OF_RULE[name])), name
    window = f"[{defaults.alert_window_minutes:g}m]"
    assert window in rules["PosegenBackgroundChangeFailureRate"]
    assert window in rules["PosegenCreditRefundRate"]
