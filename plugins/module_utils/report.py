# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Usage reports for people (a table like `xfs_quota -x -c 'report -h'`) and for tools (JSON), and
# the rows they are made of, read from the maps. A row is a dict: path (the volume's name: its path
# or its source), used_bytes, limit_bytes, files, limit_files, denials, mode, usage, unknown_usage,
# state, labels (and checks, denials_by_op, and the soft limits: soft_bytes, soft_files (None: none),
# grace_seconds, grace_expires, files_grace_expires (unix time the grace ends or ended; None while
# under the soft limit; 0 when expired at a time that was lost)).
# Reading needs none of the service's writing side (enforcement.py), so quota_info carries only this.

import json
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import grace
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import maps as quota_maps
from ansible_collections.bpfquota.nfs.plugins.module_utils import quota
from ansible_collections.bpfquota.nfs.plugins.module_utils import usage
from ansible_collections.bpfquota.nfs.plugins.module_utils.durations import format_duration
from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import format_size

ROW_KEYS = ("path", "used_bytes", "limit_bytes", "files", "limit_files", "denials", "mode", "usage", "unknown_usage",
            "state", "labels")
HEADER = ("Volume", "Used", "Limit", "Use%", "Files", "FLimit", "Denials", "Mode", "Usage", "State")
LABELS_HEADER = "Labels"  # a last column, when any volume has labels
_LEFT_ALIGNED = (0, 7, 8, 9, 10, 11, 12)  # Volume, Mode, Usage, State, Soft, Grace, Labels: text; the rest numbers
# What a volume does on this host: enforcing (or auditing) its limit; enforcing it while over its soft
# limit (grace running), or refusing growth above the soft limit as its grace expired; refusing growth
# because its usage is unknown; or nothing yet, as no NFS mount of this host reaches it (a source volume).
STATES = ("enforcing", "auditing", "over soft limit", "grace expired", "usage unknown", "not mounted here")
SOFT_HEADER = ("Soft", "Grace")  # columns after State, when any volume has a soft limit
# How the usage is known: a scan, saved usage restored at boot, or not at all (growth refused, or
# with unknown_usage: allow, counted from zero).
USAGE_STATES = ("scanned", "restored", "unknown")
_COLUMN_GAP = "  "


def pinned_maps():
    """The pinned maps (a context manager), or None when the enforcer isn't loaded; OSError or
    libbpf.LibbpfError when they can't be opened."""
    try:
        return quota_maps.QuotaMaps()
    except quota_maps.NotLoaded:
        return None


def report_rows(maps, clocks=None):
    """One row a volume: its usage, limits, soft limits, mode and denials (format_report and
    report_json). `clocks`: the grace clocks (None: read from their file; unreadable: none)."""
    if clocks is None:
        clocks, dummy = grace.load()
    applied = quota.applied_volumes(maps)
    ids = [vol_id for vol_id, volume in applied.values()]
    cfgs, all_stats = maps.vol_cfgs(ids), maps.vol_stats_of(ids)
    rows = []
    for path, (vol_id, volume) in applied.items():
        stats = all_stats[vol_id]
        used_bytes, used_files = usage.used(cfgs[vol_id], stats)
        rows.append({"path": path, "used_bytes": max(used_bytes, 0), "limit_bytes": volume.limit_bytes,
                     "files": max(used_files, 0), "limit_files": volume.limit_files,
                     "denials": sum(stats.denied.values()), "mode": volume.mode,
                     "checks": stats.checks, "denials_by_op": dict(stats.denied),
                     "usage": usage_state(cfgs[vol_id]), "unknown_usage": volume.unknown_usage,
                     "state": volume_state(cfgs[vol_id], volume, used_bytes, used_files), "labels": dict(volume.labels)})
        rows[-1].update(soft_fields(path, volume, cfgs[vol_id].flags, clocks))
    return rows


def soft_fields(name, volume, flags, clocks):
    """A row's soft-limit fields (metrics.soft_samples reads the same keys)."""
    has = volume.soft_bytes or volume.soft_files
    return {"soft_bytes": volume.soft_bytes or None, "soft_files": volume.soft_files or None,
            "grace_seconds": volume.grace_seconds if has else None,
            "grace_expires": grace.expires_at(clocks, name, "bytes", volume.grace_seconds, flags) if volume.soft_bytes else None,
            "files_grace_expires": (grace.expires_at(clocks, name, "files", volume.grace_seconds, flags)
                                    if volume.soft_files else None)}


def volume_state(cfg, volume, used_bytes=0, used_files=0):
    """What the volume does on this host: STATES."""
    if cfg.flags & layout.NOT_MOUNTED:
        return "not mounted here"
    if cfg.flags & layout.USAGE_UNKNOWN and volume.unknown_usage == "refuse":
        return "usage unknown"
    if volume.mode == "audit":
        return "auditing"
    if cfg.flags & (layout.SOFT_EXPIRED | layout.FILES_SOFT_EXPIRED):
        return "grace expired"
    if (volume.soft_bytes and used_bytes > volume.soft_bytes) or (volume.soft_files and used_files > volume.soft_files):
        return "over soft limit"
    return "enforcing"


def usage_state(cfg):
    """How a volume's usage is known: USAGE_STATES."""
    if cfg.flags & layout.USAGE_UNKNOWN:
        return "unknown"
    return "restored" if cfg.flags & layout.RESTORED else "scanned"


def format_report(rows, now=None):
    """The table as text (no trailing newline), as `bpfquota report` prints it; rows sorted by path.
    Soft and Grace columns appear when any volume has a soft limit (grace left as of `now`)."""
    if not rows:
        return "\n".join((_COLUMN_GAP.join(HEADER), "(no volumes)"))
    labelled = any(row.get("labels") for row in rows)
    soft = any(row.get("soft_bytes") or row.get("soft_files") for row in rows)
    now = time.time() if now is None else now
    header = HEADER + (SOFT_HEADER if soft else ()) + ((LABELS_HEADER,) if labelled else ())
    table = [header] + [_table_cells(row) + (_soft_cells(row, now) if soft else ()) +
                        ((_labels_cell(row),) if labelled else ()) for row in _sorted(rows)]
    widths = [max(len(cells[column]) for cells in table) for column in range(len(header))]
    return "\n".join(_table_line(cells, widths) for cells in table)


def _soft_cells(row, now):
    """Soft: the soft byte limit, and "/N files" for a soft file limit; Grace: the period while under
    the soft limits, what is left ("4m59s left") over one, or "expired"."""
    if not (row.get("soft_bytes") or row.get("soft_files")):
        return ("-", "-")
    parts = [format_size(row["soft_bytes"])] if row.get("soft_bytes") else []
    parts += ["%d files" % row["soft_files"]] if row.get("soft_files") else []
    running = [t for t in (row.get("grace_expires"), row.get("files_grace_expires")) if t is not None]
    if not running:
        left = format_duration(row["grace_seconds"])
    elif min(running) <= now:
        left = "expired"
    else:
        left = format_duration(min(running) - now) + " left"
    return ("/".join(parts), left)


def _labels_cell(row):
    return ",".join("%s=%s" % (name, value) for name, value in sorted(row.get("labels", {}).items())) or "-"


def _table_cells(row):
    return (
        row["path"],
        format_size(row["used_bytes"]),
        format_size(row["limit_bytes"]),
        _use_percent(row["used_bytes"], row["limit_bytes"]),
        str(row["files"]),
        str(row["limit_files"]) if row["limit_files"] else "-",
        str(row["denials"]),
        row["mode"],
        _usage_cell(row),
        row.get("state", "enforcing"),
    )


def _usage_cell(row):
    if row["usage"] == "unknown" and row["unknown_usage"] == "allow":
        return "unknown (counted from 0)"
    return row["usage"]


def _use_percent(used, limit):
    if not limit:
        return "-"
    # floor, so 100% appears only once the limit is actually reached
    return "%d%%" % (max(used, 0) * 100 // limit)


def _table_line(cells, widths):
    padded = [cell.ljust(width) if column in _LEFT_ALIGNED else cell.rjust(width)
              for column, (cell, width) in enumerate(zip(cells, widths))]
    return _COLUMN_GAP.join(padded).rstrip()


def report_json(rows):
    """{"volumes": [row + percent]} as indented JSON, sorted by path, keys in a fixed order."""
    return json.dumps({"volumes": [_json_row(row) for row in _sorted(rows)]}, indent=2)


def _json_row(row):
    item = dict((key, row[key]) for key in ROW_KEYS)
    # keys beyond the documented ones pass through, in a stable order
    for key in sorted(key for key in row if key not in ROW_KEYS):
        item[key] = row[key]
    item["percent"] = _percent(row["used_bytes"], row["limit_bytes"])
    return item


def _percent(used, limit):
    if not limit:
        return None
    return round(used * 100.0 / limit, 1)


def _sorted(rows):
    return sorted(rows, key=lambda row: row["path"])
