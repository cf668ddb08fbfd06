# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service behind `bpfquota metrics` and the agent's metrics: gathers this host's data (the
report rows, when each volume was last scanned, the programs' run statistics) for metrics.render,
and writes the file node_exporter's textfile collector serves. It only reads the maps: no lock."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import loader
from ansible_collections.bpfquota.nfs.plugins.module_utils import metrics
from ansible_collections.bpfquota.nfs.plugins.module_utils import scantimes
from ansible_collections.bpfquota.nfs.plugins.module_utils.atomic import write_atomically
from ansible_collections.bpfquota.nfs.plugins.module_utils.enforcement import USAGE, BpfquotaError
from ansible_collections.bpfquota.nfs.plugins.module_utils.report import pinned_maps, report_rows

FILENAME = layout.METRICS_FILENAME
DEFAULT_DIR = layout.METRICS_DIR
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def stats_enabled(path=STATS_SYSCTL):
    """Whether the kernel counts BPF program run time and runs; None when it can't tell."""
    try:
        with open(path) as f:
            return f.read().strip() != "0"
    except (IOError, OSError):
        return None


def program_stats(link_dir=layout.LINK_DIR):
    """{program name: {"run_time_ns", "run_cnt"}} of the attached programs. A program gone between
    the listing and the read (an unload or an upgrade) is left out."""
    stats = {}
    for name, prog_id in loader.program_ids(link_dir).items():
        try:
            info = libbpf.prog_info(prog_id=prog_id)
        except libbpf.LibbpfError as e:
            if e.errno == errno.ENOENT:
                continue
            raise
        stats[name] = {"run_time_ns": info["run_time_ns"], "run_cnt": info["run_cnt"]}
    return stats


def metric_rows(rows, scanned_at):
    """The report rows, each with the unix time of its volume's last successful scan (or None)."""
    return [dict(row, scanned_at=scanned_at.get(row["path"])) for row in rows]


def metrics_text(maps, agent=None, now=None, link_dir=layout.LINK_DIR, scans_path=None):
    """This host's metrics text. `maps`: the open maps, or None when the enforcer isn't loaded;
    `agent`: the agent's health (metrics.render), None from the CLI."""
    programs = program_stats(link_dir)
    rows = []
    if maps is not None:
        scanned_at, dummy = scantimes.load(scans_path)  # a damaged file: no ages until the next scan rewrites it
        rows = metric_rows(report_rows(maps), scanned_at)
    host = {"loaded": bool(programs), "stats_enabled": stats_enabled(), "programs": programs, "agent": agent}
    return metrics.render(rows, host, time.time() if now is None else now)


def host_metrics_text(agent=None):
    """metrics_text of the pinned maps, opened for the call (none: the enforcer isn't loaded)."""
    maps = pinned_maps()
    try:
        return metrics_text(maps, agent)
    finally:
        if maps is not None:
            maps.close()


def write_textfile(directory, text):
    """Replace directory/bpfquota.prom with `text` (mode 0644: node_exporter runs as its own user),
    atomically, so a scrape never reads half a file. Returns its path. BpfquotaError USAGE when the
    directory doesn't exist: it is the collector's, made by its package; nothing makes it here."""
    if not os.path.isdir(directory):
        raise BpfquotaError("metrics directory %s does not exist: install node_exporter (Debian: "
                            "prometheus-node-exporter), whose textfile collector reads it, or name the directory "
                            "its --collector.textfile.directory reads" % directory, USAGE)
    path = os.path.join(directory, FILENAME)
    write_atomically(path, text.encode("utf-8"), mode=0o644, durable=False)
    return path
