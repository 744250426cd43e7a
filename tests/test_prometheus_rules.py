"""config/prometheus/ as the ecosystem checks it: `promtool check config`, `check rules`
and `test rules` (Debian's prometheus package), and every metric the rules read is one
the service exports."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT

FOLDER = ROOT / "config" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=FOLDER, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_shipped_scrape_config_and_rules_are_valid() -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = promtool("check", "rules", "rules.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 11 rules found" in rules.stdout


def test_each_alert_fires_when_it_should_and_not_before() -> None:
    tested = promtool("test", "rules", "rules_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_rules_read_only_metrics_the_service_exports() -> None:
    used = set(re.findall(r"classroom_edge_\w+", (FOLDER / "rules.yml").read_text()))
    source = (ROOT / "edge" / "web" / "metrics.py").read_text()
    exported = set(re.findall(r'"(classroom_edge_\w+)"', source))
    assert used and used <= exported, used - exported
    tested = (FOLDER / "rules_test.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", (FOLDER / "rules.yml").read_text())
    untested = [a for a in alerts if f"alertname: {a}\n" not in tested]
    assert not untested, untested
