# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The metrics as Prometheus text (the format node_exporter's textfile collector reads): pure
functions of the report rows (report.report_rows, plus `scanned_at`, and the soft-limit fields
`soft_bytes`, `grace_seconds`, `grace_expires` once volumes have them) and the host's data.

The volume labels are named as kubelet's volume stats name them (persistentvolumeclaim,
namespace), so alerts and dashboards written for kubelet_volume_stats_* can be pointed here.
Output is sorted (families by name, series by labels), so equal data gives equal text.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import math

from ansible_collections.bpfquota.nfs.plugins.module_utils.report import STATES

# (metric label, key in a volume's labels), in the order series carry them
VOLUME_LABELS = (("persistentvolume", "pv"), ("namespace", "namespace"), ("persistentvolumeclaim", "claim"))
# report.STATES as label values: no spaces, so they are easy to write in PromQL
STATE_VALUES = {"enforcing": "enforcing", "auditing": "auditing", "over soft limit": "over_soft_limit",
                "grace expired": "grace_expired", "usage unknown": "usage_unknown", "not mounted here": "not_mounted"}

Family = collections.namedtuple("Family", "type help")
FAMILIES = {
    "bpfquota_volume_used_bytes": Family("gauge", "Bytes the volume uses, as the enforcer counts them."),
    "bpfquota_volume_limit_bytes": Family("gauge", "The volume's byte limit (its hard limit)."),
    "bpfquota_volume_available_bytes": Family("gauge", "Bytes left before the hard limit (0 at or over it)."),
    "bpfquota_volume_files": Family("gauge", "Files and directories the volume holds, as the enforcer counts them."),
    "bpfquota_volume_files_limit": Family("gauge", "The volume's file-count limit (only volumes that have one)."),
    "bpfquota_volume_refused_operations_total": Family(
        "counter", "Operations refused for the volume's limits, by operation (audit mode: those that would have been)."),
    "bpfquota_volume_state": Family(
        "gauge", "1 for what the volume does on this host: enforcing, auditing, over_soft_limit (enforcing, grace "
                 "running), grace_expired (growth above the soft limit refused), usage_unknown (growth refused until "
                 "a scan), not_mounted (no NFS mount of this host reaches it); 0 for the others."),
    "bpfquota_volume_last_scan_age_seconds": Family(
        "gauge", "Seconds since the volume's usage was last scanned successfully (absent: never on this host)."),
    "bpfquota_volume_soft_limit_bytes": Family("gauge", "The volume's soft limit (only volumes that have one)."),
    "bpfquota_volume_over_soft_limit": Family("gauge", "1 while the volume uses more than its soft limit, else 0."),
    "bpfquota_volume_grace_remaining_seconds": Family(
        "gauge", "Seconds of grace left over the soft limit before growth is refused (the whole grace period while "
                 "under the soft limit, 0 once expired)."),
    "bpfquota_volume_files_soft_limit": Family("gauge", "The volume's soft file-count limit (only volumes that have one)."),
    "bpfquota_volume_over_files_soft_limit": Family("gauge", "1 while the volume holds more files than its soft file limit."),
    "bpfquota_volume_files_grace_remaining_seconds": Family(
        "gauge", "Seconds of grace left over the soft file limit before creates are refused (the whole grace period "
                 "while under it, 0 once expired)."),
    "bpfquota_enforcer_loaded": Family("gauge", "1 when the enforcer's programs are loaded and attached, else 0."),
    "bpfquota_program_stats_enabled": Family(
        "gauge", "1 when the kernel counts BPF program run time (sysctl kernel.bpf_stats_enabled=1), else 0."),
    "bpfquota_program_run_seconds_total": Family(
        "counter", "Time the enforcer's program spent running (counted only while kernel.bpf_stats_enabled=1)."),
    "bpfquota_program_runs_total": Family(
        "counter", "Runs of the enforcer's program (counted only while kernel.bpf_stats_enabled=1)."),
    "bpfquota_agent_last_round_timestamp_seconds": Family(
        "gauge", "Unix time the agent last finished a reconcile round."),
    "bpfquota_agent_rounds_total": Family("counter", "Reconcile rounds the agent finished since it started."),
    "bpfquota_agent_errors_total": Family(
        "counter", "Errors of the agent since it started, by kind: routes (mounts not followed), scan (a volume's scan "
                   "failed), save (usage or grace clocks not saved), metrics (this file not written), watch (soft limits not "
                   "checked)."),
}
AGENT_ERROR_KINDS = ("metrics", "routes", "save", "scan", "watch")


def render(rows, host, now):
    """The metrics text of the volume rows and the host data at unix time `now` (ages and grace).

    host: {"loaded": bool, "stats_enabled": bool or None (unknown), "programs": {name: {"run_time_ns",
    "run_cnt"}}, "agent": None (not the agent) or {"rounds", "last_round" (unix time or None),
    "errors": {kind: count}}}."""
    samples = []
    for row in rows:
        samples.extend(volume_samples(row, now))
    samples.extend(host_samples(host))
    return exposition(samples)


def volume_labels(row):
    """The labels that name a volume: ((name, value), ...)."""
    labels = row.get("labels") or {}
    return (("volume", row["path"]),) + tuple((name, labels[key]) for name, key in VOLUME_LABELS if key in labels)


def volume_samples(row, now):
    """[(metric, labels, value)] of one volume row."""
    base = volume_labels(row)
    used, limit = row["used_bytes"], row["limit_bytes"]
    out = [("bpfquota_volume_used_bytes", base, used),
           ("bpfquota_volume_limit_bytes", base, limit),
           ("bpfquota_volume_available_bytes", base, max(limit - used, 0)),
           ("bpfquota_volume_files", base, row["files"])]
    if row.get("limit_files"):
        out.append(("bpfquota_volume_files_limit", base, row["limit_files"]))
    for operation, count in (row.get("denials_by_op") or {}).items():
        out.append(("bpfquota_volume_refused_operations_total", base + (("operation", operation),), count))
    for state in STATES:
        out.append(("bpfquota_volume_state", base + (("state", STATE_VALUES[state]),), int(row["state"] == state)))
    if row.get("scanned_at") is not None:
        out.append(("bpfquota_volume_last_scan_age_seconds", base, max(now - row["scanned_at"], 0)))
    return out + soft_samples(row, base, now)


def soft_samples(row, base, now):
    """The soft-limit series, only for a row that carries a soft limit (bytes, files or both)."""
    out = []
    for prefix, soft_key, used_key, expires_key, limit_name in (
            ("bpfquota_volume_", "soft_bytes", "used_bytes", "grace_expires", "soft_limit_bytes"),
            ("bpfquota_volume_files_", "soft_files", "files", "files_grace_expires", "soft_limit")):
        if row.get(soft_key) is None:
            continue
        out.append((prefix + limit_name, base, row[soft_key]))
        out.append((prefix.replace("files_", "") + "over_" + ("files_" if "files" in prefix else "") + "soft_limit",
                    base, int(row[used_key] > row[soft_key])))
        if row.get(expires_key) is not None:
            out.append((prefix + "grace_remaining_seconds", base, max(row[expires_key] - now, 0)))
        elif row.get("grace_seconds") is not None:
            out.append((prefix + "grace_remaining_seconds", base, row["grace_seconds"]))  # the clock isn't running
    return out


def host_samples(host):
    """[(metric, labels, value)] of the enforcer, its programs and (when given) the agent."""
    out = [("bpfquota_enforcer_loaded", (), int(bool(host["loaded"])))]
    if host.get("stats_enabled") is not None:
        out.append(("bpfquota_program_stats_enabled", (), int(bool(host["stats_enabled"]))))
    for program, stats in (host.get("programs") or {}).items():
        labels = (("program", program),)
        out.append(("bpfquota_program_run_seconds_total", labels, stats["run_time_ns"] / 1e9))
        out.append(("bpfquota_program_runs_total", labels, stats["run_cnt"]))
    agent = host.get("agent")
    if agent is not None:
        if agent.get("last_round") is not None:
            out.append(("bpfquota_agent_last_round_timestamp_seconds", (), agent["last_round"]))
        out.append(("bpfquota_agent_rounds_total", (), agent["rounds"]))
        errors = agent.get("errors") or {}
        for kind in sorted(set(AGENT_ERROR_KINDS) | set(errors)):
            out.append(("bpfquota_agent_errors_total", (("kind", kind),), errors.get(kind, 0)))
    return out


def exposition(samples):
    """Text exposition format of [(metric, labels, value)]: HELP and TYPE once per family, families
    by name, series by their labels; a trailing newline (node_exporter wants whole lines)."""
    by_family = collections.defaultdict(list)
    for name, labels, value in samples:
        by_family[name].append((labels, value))
    lines = []
    for name in sorted(by_family):
        family = FAMILIES[name]
        lines.append("# HELP %s %s" % (name, escape_help(family.help)))
        lines.append("# TYPE %s %s" % (name, family.type))
        for labels, value in sorted(by_family[name], key=lambda series: series[0]):
            lines.append("%s%s %s" % (name, format_labels(labels), format_value(value)))
    return "".join(line + "\n" for line in lines)


def format_labels(labels):
    if not labels:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (name, escape_label_value(value)) for name, value in labels)


def escape_label_value(value):
    """A label value as the text format writes it. Paths may hold bytes that are not UTF-8
    (surrogate escapes): those become U+FFFD, as the format is UTF-8."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value):
    """Integers as integers; other numbers in the shortest form that reads back the same."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and not (math.isinf(value) or math.isnan(value)) and value == int(value):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
