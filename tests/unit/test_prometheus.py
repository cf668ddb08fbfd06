# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""promtool's verdict on what bpfquota gives Prometheus: the metrics text (check metrics, which also
lints the names), the shipped alerting rules (check rules) and their behaviour on synthetic series
(test rules, tests/unit/alerts/). promtool comes from Debian's prometheus package
(scripts/setup-host.sh); without it these tests fail, they never skip."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout, metrics

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
RULES = os.path.join(REPO_ROOT, "roles", "enforcer", "files", "bpfquota.rules.yml")
RULE_TESTS = os.path.join(HERE, "alerts", "bpfquota.rules.test.yml")


def promtool(*args, **kwargs):
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package (bash scripts/setup-host.sh does)")
    return subprocess.run([path] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120, check=False, **kwargs)


def every_metric():
    """Text with every family: a PV with a soft limit over it, a path volume, programs and the agent."""
    ops = dict((op, index) for index, op in enumerate(layout.OPS))
    rows = [
        dict(path="10.0.0.5:/exports/shop/db", used_bytes=900, limit_bytes=1000, files=3, limit_files=10,
             state="enforcing", labels={"pv": "pv-db", "namespace": "shop", "claim": "db"}, denials_by_op=ops,
             scanned_at=100.5, soft_bytes=800, grace_seconds=604800, grace_expires=4000, soft_files=2,
             files_grace_expires=None),
        dict(path='/mnt/nfs/odd "name"\\\n', used_bytes=0, limit_bytes=1 << 40, files=0, limit_files=0,
             state="not mounted here", labels={}, denials_by_op=ops),
    ]
    host = {"loaded": True, "stats_enabled": True,
            "programs": {"bq_file_permission": {"run_time_ns": 123456789, "run_cnt": 1000}},
            "agent": {"rounds": 1, "last_round": 1700000000.25, "errors": {"scan": 2}}}
    return metrics.render(rows, host, now=1000)


def test_the_metrics_pass_promtool_check_metrics():
    text = every_metric()
    assert set(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")) == set(metrics.FAMILIES)
    result = promtool("check", "metrics", input=text)
    assert (result.returncode, result.stdout) == (0, "")


def test_promtool_check_metrics_can_fail():
    # The check above means something only if promtool rejects what breaks the conventions.
    result = promtool("check", "metrics", input="# TYPE bpfquota_refusals counter\nbpfquota_refusals 1\n")
    assert result.returncode != 0 and "counter metrics should have \"_total\" suffix" in result.stdout


def test_the_alerting_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout
    assert "SUCCESS: 7 rules found" in result.stdout


def test_the_alerting_rules_fire_when_they_should_and_only_then():
    result = promtool("test", "rules", os.path.basename(RULE_TESTS), cwd=os.path.dirname(RULE_TESTS))
    assert result.returncode == 0, result.stdout
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_test():
    with open(RULES) as f:
        alerts = set(line.split(":", 1)[1].strip() for line in f if line.strip().startswith("- alert:"))
    with open(RULE_TESTS) as f:
        tested = set(line.split(":", 1)[1].strip() for line in f if line.strip().startswith("alertname:"))
    assert len(alerts) == 7 and alerts == tested
