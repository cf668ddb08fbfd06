# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""metrics: report rows and host data as Prometheus text (promtool's verdict: tests/unit/test_prometheus.py)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout, metrics, report


def row(path, used, limit, files=0, limit_files=0, state="enforcing", labels=None, denials_by_op=None, **extra):
    return dict(path=path, used_bytes=used, limit_bytes=limit, files=files, limit_files=limit_files,
                denials=sum((denials_by_op or {}).values()), mode="audit" if state == "auditing" else "enforce",
                usage="scanned", unknown_usage="refuse", state=state, labels=labels or {},
                denials_by_op=denials_by_op or {}, checks=0, **extra)


NOT_LOADED = {"loaded": False, "stats_enabled": None, "programs": {}, "agent": None}
PV_LABELS = {"pv": "pv-db", "namespace": "shop", "claim": "db"}


def test_two_volumes_and_a_host_render_exactly():
    rows = [row("/mnt/nfs/pv-web", 9000, 8000, files=2, state="auditing", denials_by_op={"write": 3, "create": 0}),
            row("10.0.0.5:/exports/shop/db", 1000, 4096, files=7, limit_files=100, labels=PV_LABELS,
                denials_by_op={"write": 0}, scanned_at=1000)]
    host = {"loaded": True, "stats_enabled": True,
            "programs": {"bq_file_permission": {"run_time_ns": 1500000000, "run_cnt": 42}},
            "agent": {"rounds": 2, "last_round": 1060, "errors": {"scan": 1}}}
    web = 'volume="/mnt/nfs/pv-web"'
    db = 'volume="10.0.0.5:/exports/shop/db",persistentvolume="pv-db",namespace="shop",persistentvolumeclaim="db"'

    def family(name, *series):
        return ["# HELP %s %s" % (name, metrics.FAMILIES[name].help), "# TYPE %s %s" % (name, metrics.FAMILIES[name].type)] + list(series)

    assert metrics.render(rows, host, now=1090.5) == "\n".join(
        family("bpfquota_agent_errors_total", 'bpfquota_agent_errors_total{kind="metrics"} 0',
               'bpfquota_agent_errors_total{kind="routes"} 0', 'bpfquota_agent_errors_total{kind="save"} 0',
               'bpfquota_agent_errors_total{kind="scan"} 1', 'bpfquota_agent_errors_total{kind="watch"} 0')
        + family("bpfquota_agent_last_round_timestamp_seconds", "bpfquota_agent_last_round_timestamp_seconds 1060")
        + family("bpfquota_agent_rounds_total", "bpfquota_agent_rounds_total 2")
        + family("bpfquota_enforcer_loaded", "bpfquota_enforcer_loaded 1")
        + family("bpfquota_program_run_seconds_total",
                 'bpfquota_program_run_seconds_total{program="bq_file_permission"} 1.5')
        + family("bpfquota_program_runs_total", 'bpfquota_program_runs_total{program="bq_file_permission"} 42')
        + family("bpfquota_program_stats_enabled", "bpfquota_program_stats_enabled 1")
        + family("bpfquota_volume_available_bytes", "bpfquota_volume_available_bytes{%s} 0" % web,
                 "bpfquota_volume_available_bytes{%s} 3096" % db)
        + family("bpfquota_volume_files", "bpfquota_volume_files{%s} 2" % web, "bpfquota_volume_files{%s} 7" % db)
        + family("bpfquota_volume_files_limit", "bpfquota_volume_files_limit{%s} 100" % db)
        + family("bpfquota_volume_last_scan_age_seconds", "bpfquota_volume_last_scan_age_seconds{%s} 90.5" % db)
        + family("bpfquota_volume_limit_bytes", "bpfquota_volume_limit_bytes{%s} 8000" % web,
                 "bpfquota_volume_limit_bytes{%s} 4096" % db)
        + family("bpfquota_volume_refused_operations_total",
                 'bpfquota_volume_refused_operations_total{%s,operation="create"} 0' % web,
                 'bpfquota_volume_refused_operations_total{%s,operation="write"} 3' % web,
                 'bpfquota_volume_refused_operations_total{%s,operation="write"} 0' % db)
        + family("bpfquota_volume_state",
                 'bpfquota_volume_state{%s,state="auditing"} 1' % web,
                 'bpfquota_volume_state{%s,state="enforcing"} 0' % web,
                 'bpfquota_volume_state{%s,state="grace_expired"} 0' % web,
                 'bpfquota_volume_state{%s,state="not_mounted"} 0' % web,
                 'bpfquota_volume_state{%s,state="over_soft_limit"} 0' % web,
                 'bpfquota_volume_state{%s,state="usage_unknown"} 0' % web,
                 'bpfquota_volume_state{%s,state="auditing"} 0' % db,
                 'bpfquota_volume_state{%s,state="enforcing"} 1' % db,
                 'bpfquota_volume_state{%s,state="grace_expired"} 0' % db,
                 'bpfquota_volume_state{%s,state="not_mounted"} 0' % db,
                 'bpfquota_volume_state{%s,state="over_soft_limit"} 0' % db,
                 'bpfquota_volume_state{%s,state="usage_unknown"} 0' % db)
        + family("bpfquota_volume_used_bytes", "bpfquota_volume_used_bytes{%s} 9000" % web,
                 "bpfquota_volume_used_bytes{%s} 1000" % db)) + "\n"


def test_the_order_of_the_rows_does_not_change_the_text():
    rows = [row("/b", 1, 2, denials_by_op={"write": 1, "create": 2}), row("/a", 3, 4, labels=PV_LABELS)]
    assert metrics.render(rows, NOT_LOADED, 0) == metrics.render(rows[::-1], NOT_LOADED, 0)


def test_no_volumes_not_loaded_and_no_agent_give_only_the_enforcer_line():
    assert metrics.render([], NOT_LOADED, 0) == (
        "# HELP bpfquota_enforcer_loaded %s\n# TYPE bpfquota_enforcer_loaded gauge\nbpfquota_enforcer_loaded 0\n"
        % metrics.FAMILIES["bpfquota_enforcer_loaded"].help)


def test_every_report_state_has_a_label_value_and_a_volume_has_exactly_one():
    assert sorted(metrics.STATE_VALUES) == sorted(report.STATES)
    assert all(" " not in value for value in metrics.STATE_VALUES.values())
    for state in report.STATES:
        samples = [s for s in metrics.volume_samples(row("/a", 0, 1, state=state), 0) if s[0] == "bpfquota_volume_state"]
        assert sorted((dict(labels)["state"], value) for name, labels, value in samples) == sorted(
            (value, int(key == state)) for key, value in metrics.STATE_VALUES.items())


def test_every_operation_the_kernel_counts_gets_a_series():
    samples = metrics.volume_samples(row("/a", 0, 1, denials_by_op=dict((op, 0) for op in layout.OPS)), 0)
    assert sorted(dict(labels)["operation"] for name, labels, value in samples
                  if name == "bpfquota_volume_refused_operations_total") == sorted(layout.OPS)


def test_only_the_known_volume_labels_are_carried_under_kubelet_names():
    labels = metrics.volume_labels(row("/a", 0, 1, labels={"claim": "c", "team": "t", "pv": "p"}))
    assert labels == (("volume", "/a"), ("persistentvolume", "p"), ("persistentvolumeclaim", "c"))


@pytest.mark.parametrize("value, text", [
    ('/mnt/"quoted"', '/mnt/\\"quoted\\"'),
    ("/mnt/back\\slash", "/mnt/back\\\\slash"),
    ("/mnt/new\nline", "/mnt/new\\nline"),
    ("/mnt/caf\u00e9", "/mnt/caf\u00e9"),
    ("/mnt/raw\udce9", "/mnt/raw\ufffd"),  # a byte that is not UTF-8 (surrogate escape)
])
def test_label_values_are_escaped(value, text):
    assert metrics.escape_label_value(value) == text
    line = [line for line in metrics.render([row(value, 0, 1)], NOT_LOADED, 0).splitlines()
            if line.startswith("bpfquota_volume_used_bytes")]
    assert line == ['bpfquota_volume_used_bytes{volume="%s"} 0' % text]


def test_help_text_escapes_backslashes_and_newlines():
    assert metrics.escape_help("a\\b\nc") == "a\\\\b\\nc"


@pytest.mark.parametrize("value, text", [(0, "0"), (True, "1"), (2 ** 62, "4611686018427387904"), (90.0, "90"),
                                         (0.001234567, "0.001234567"), (float("inf"), "+Inf")])
def test_values(value, text):
    assert metrics.format_value(value) == text


SOFT = ("bpfquota_volume_soft_limit_bytes", "bpfquota_volume_over_soft_limit", "bpfquota_volume_grace_remaining_seconds")


def soft_series(**fields):
    return dict((name, value) for name, labels, value in metrics.volume_samples(row("/a", 900, 1000, **fields), now=500)
                if name in SOFT)


def test_soft_metrics_only_for_rows_with_a_soft_limit():
    assert soft_series() == {}
    assert soft_series(soft_bytes=None, grace_seconds=None, grace_expires=None) == {}
    assert not any(name in metrics.render([row("/a", 1, 2)], NOT_LOADED, 0) for name in SOFT)


def test_soft_limit_under_it_the_whole_grace_is_left():
    assert soft_series(soft_bytes=950, grace_seconds=604800, grace_expires=None) == {
        "bpfquota_volume_soft_limit_bytes": 950, "bpfquota_volume_over_soft_limit": 0,
        "bpfquota_volume_grace_remaining_seconds": 604800}
    assert soft_series(soft_bytes=900, grace_seconds=60, grace_expires=None)["bpfquota_volume_over_soft_limit"] == 0


def test_soft_limit_over_it_the_clock_runs_down_to_zero():
    assert soft_series(soft_bytes=800, grace_seconds=604800, grace_expires=3500) == {
        "bpfquota_volume_soft_limit_bytes": 800, "bpfquota_volume_over_soft_limit": 1,
        "bpfquota_volume_grace_remaining_seconds": 3000}
    assert soft_series(soft_bytes=800, grace_seconds=604800, grace_expires=100)[
        "bpfquota_volume_grace_remaining_seconds"] == 0


def test_a_scan_in_the_future_is_no_negative_age():
    samples = metrics.volume_samples(row("/a", 0, 1, scanned_at=1000), now=990)
    assert [value for name, labels, value in samples if name == "bpfquota_volume_last_scan_age_seconds"] == [0]
    assert not [name for name, labels, value in metrics.volume_samples(row("/a", 0, 1, scanned_at=None), now=990)
                if name == "bpfquota_volume_last_scan_age_seconds"]
