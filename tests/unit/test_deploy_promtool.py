"""The Prometheus files pass the real promtool (Debian package `prometheus`): rules, config, rule unit tests.

A missing promtool FAILS these tests: the alert rules are part of the deliverable, and unchecked rules are
how broken alerts reach production.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(exe).exists():
        pytest.fail("promtool is missing: install the Debian package `prometheus` (apt-get install prometheus)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=DEPLOY)


def test_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", "rules/omnistream.rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_compose_scrape_config_passes_promtool_check() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass() -> None:
    tests = sorted(p.name for p in (DEPLOY / "tests").glob("*.yml"))
    assert tests, "no promtool rule tests"
    done = promtool("test", "rules", *(f"tests/{t}" for t in tests))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_has_a_unit_test() -> None:
    import yaml

    rules = yaml.safe_load((DEPLOY / "rules" / "omnistream.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tested: set[str] = set()
    for path in (DEPLOY / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {a["alertname"] for a in case.get("alert_rule_test", [])}
    assert alerts - tested == set()
