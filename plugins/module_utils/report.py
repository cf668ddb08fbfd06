# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Usage reports for people (a table like `xfs_quota -x -c 'report -h'`) and for tools (JSON).
# A row is a dict: path, used_bytes, limit_bytes, files, limit_files, denials, mode, usage, unknown_usage.

import json

from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import format_size

ROW_KEYS = ("path", "used_bytes", "limit_bytes", "files", "limit_files", "denials", "mode", "usage", "unknown_usage")
HEADER = ("Volume", "Used", "Limit", "Use%", "Files", "FLimit", "Denials", "Mode", "Usage")
_LEFT_ALIGNED = (0, 7, 8)  # Volume, Mode and Usage are text; the rest are numbers
# How the usage is known: a scan, saved usage restored at boot, or not at all (growth refused, or
# with unknown_usage: allow, counted from zero).
USAGE_STATES = ("scanned", "restored", "unknown")
_COLUMN_GAP = "  "


def format_report(rows):
    """The table as text (no trailing newline); rows sorted by path."""
    if not rows:
        return "\n".join((_COLUMN_GAP.join(HEADER), "(no volumes)"))
    table = [HEADER] + [_table_cells(row) for row in _sorted(rows)]
    widths = [max(len(cells[column]) for cells in table) for column in range(len(HEADER))]
    return "\n".join(_table_line(cells, widths) for cells in table)


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
